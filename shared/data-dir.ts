// The data dir holds a host's private keys, certificates and (on an auth server) the CAs'
// backend. Anyone who may write into it, or into a directory above it, can replace what is
// there, so such a data dir is refused, or made private when it is ours (shared/private-dir.ts).

import type { Logger } from './log.ts'
import { checkPrivateDir } from './private-dir.ts'

/**
 * Checks a data dir (a missing one is created 0700 at the first write, so only the directories
 * above it are checked): one that belongs to neither the running user nor root, or sits under
 * a directory others could rename it out of, is refused; one that others may write into is
 * refused when it is someone else's, and made 0700 with a warning when it is ours.
 */
export function secureDataDir(dir: string, log: Logger): void {
  checkPrivateDir(dir, {
    what: 'data dir',
    harm: 'replace its keys, certificates and backend',
    madePrivate: (mode) => log.warn(`data dir ${dir} was writable by other users (mode ${mode}); its mode is now 0700`, { path: dir, mode, new_mode: '0700' }),
  })
}

/**
 * Checks `auth_service.recording_dir` by the same rules: whoever may write into it can plant
 * recordings (links the server refuses to follow, auth/recordings.ts) and change the ones
 * there. A folder shared by auth servers (NFS) belongs to the user they run as.
 */
export function secureRecordingDir(dir: string, log: Logger): void {
  checkPrivateDir(dir, {
    what: 'auth_service.recording_dir',
    harm: 'plant or change session recordings',
    madePrivate: (mode) => log.warn(`auth_service.recording_dir ${dir} was writable by other users (mode ${mode}); its mode is now 0700`, { path: dir, mode, new_mode: '0700' }),
  })
}

/**
 * Checks the folder of the SQLite backend (`auth_service.storage.path`) by the same rules,
 * except that one others may write into is refused, never made private (it may be a folder
 * others use, such as /tmp): whoever may write there can put a database of their own in
 * place before the auth server creates its own, and read the CAs' private keys from it.
 */
export function secureStorageDir(dir: string): void {
  checkPrivateDir(dir, { what: 'the folder of auth_service.storage.path', harm: "replace the backend, or read the CAs' private keys in it" })
}

/**
 * Checks the folder a backup of the SQLite backend is written to, or restored from, by the
 * same rules as the backend's own (refused, never made private): a backup holds the CAs'
 * private keys, and whoever may write into its folder can put a database of their own in
 * its place, which a restore would make the cluster's.
 */
export function secureBackupDir(dir: string): void {
  checkPrivateDir(dir, { what: 'the folder of the backup', harm: "replace the backup, which holds the CAs' private keys, with one of their own" })
}

/**
 * Checks a data dir by secureDataDir's rules where nothing may be changed (a command that
 * acts on a stopped auth server's files): one that others may write into is refused, even
 * the running user's own, instead of being made private.
 */
export function checkDataDir(dir: string): void {
  checkPrivateDir(dir, { what: 'data dir', harm: 'replace its keys, certificates and backend' })
}
