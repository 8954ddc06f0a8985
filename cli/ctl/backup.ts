// `warrenctl backup FILE` and `warrenctl restore FILE`: the embedded backend copied while the
// auth server runs, and put back while it is stopped (auth/backend/sqlite-backup.ts). Both
// act on the auth server's files on this host, never through the API: the copy holds the
// CAs' private keys, which never leave the auth host over the network.

import { dirname, resolve } from 'node:path'
import { type UndoneItem, undoneItems, undoneLines } from '../../auth/backend/restore-undone.ts'
import { backUpSqlite, restoreSqlite } from '../../auth/backend/sqlite-backup.ts'
import { applyFlags, defaultConfig, loadConfigFile } from '../../shared/config.ts'
import { checkDataDir, secureBackupDir, secureStorageDir } from '../../shared/data-dir.ts'
import { lockDataDir } from '../../shared/data-dir-lock.ts'
import { UsageError } from '../../shared/errors.ts'
import { defineCommand } from '../command.ts'
import { defineFlags, type FlagValues } from '../flags.ts'
import { out } from './ctl-command.ts'

const FLAGS = defineFlags({
  config: { type: 'path', placeholder: 'FILE', description: "the auth server's config file (its data_dir and storage)" },
  'data-dir': {
    type: 'path',
    placeholder: 'DIR',
    description: "the auth server's data dir, its backend the default backend.db there (default: the config's data_dir, else /var/lib/warren)",
  },
})

/**
 * The auth server's data dir and SQLite file, resolved as `warren start` resolves them from
 * the same --config and --data-dir (a storage path left at its default follows the data dir),
 * so that restore locks the data dir of the very auth server whose file it replaces.
 */
function backendOf(flags: FlagValues<typeof FLAGS>): { dataDir: string; path: string } {
  const config = applyFlags(flags.config === undefined ? defaultConfig() : loadConfigFile(flags.config), { dataDir: flags['data-dir'] })
  if (config.auth.storage.type !== 'sqlite')
    throw new UsageError('the backend is etcd: back it up with "etcdctl snapshot save FILE" (and put it back with "etcdutl snapshot restore"), as the etcd cluster\'s own tools do')
  return { dataDir: config.dataDir, path: config.auth.storage.path }
}

export const backup = defineCommand({
  name: 'warrenctl backup',
  summary: "a copy of the auth server's embedded backend (its CAs, nodes, users, roles, tokens), made while it runs",
  operands: ['FILE'],
  flags: FLAGS,
  description:
    "Run on the auth server's host. FILE must not exist; it is made readable by its owner only, since it holds the CAs' private keys: keep it as secret as they are. Its folder, like the backend's, must be private as warren start requires (others may not write into it): one that is not is refused. The copy is whole although the auth server keeps writing. With an etcd backend, use etcdctl snapshot save.",
  examples: ['warrenctl backup /var/backups/warren-$(date +%F).db', 'warrenctl backup --config=/etc/warren.yaml /root/warren.db'],
  run(flags, args) {
    const { path } = backendOf(flags)
    // The folders `warren start` requires of the backend's, and the same of the copy's.
    secureStorageDir(dirname(path))
    secureBackupDir(dirname(resolve(args[0])))
    const summary = backUpSqlite(path, args[0])
    out(`Backed up cluster "${summary.clusterName}" (${summary.items} records) to ${args[0]}.`)
    out("It holds the CAs' private keys: keep it as secret as they are.")
    return 0
  },
})

/**
 * What `warrenctl restore --format=json` prints: one object (README, "Backups"). `undone` is
 * null when what the restore undoes cannot be told, and `undone_unknown` says why.
 */
export interface RestoreReport {
  cluster_name: string
  /** The records of the backup, now in the backend. */
  records: number
  /** The backend the backup was put in place of. */
  backend: string
  /** Where the backend it replaced is kept; null when there was none. */
  kept_as: string | null
  undone: UndoneItem[] | null
  undone_unknown: string | null
}

export const restore = defineCommand({
  name: 'warrenctl restore',
  summary: "puts a backup of warrenctl backup in place of the auth server's backend; the auth server must be stopped",
  operands: ['FILE'],
  flags: {
    ...FLAGS,
    format: {
      type: 'enum',
      values: ['text', 'json'],
      default: 'text',
      description: 'text for people, or json: one object, what it undoes as records with kind, subject, id and command',
    },
  },
  description:
    "Run on the auth server's host with the auth server stopped: refused while it runs (the data dir's lock), and refused when the backend there is another cluster's, or, changing nothing, when the data dir, the backend's folder or FILE's folder is one others may write into, as warren start refuses them. The backend it replaces is kept beside it (backend.db.before-restore-TIME). What changed since the backup is undone, and the audit log is restored too: it lists what it undoes (users removed, reset or added, locks made or lifted, hosts removed or joined, assigned labels, tokens used, deleted or made, roles, a CA rotation), each with the command that makes it again. With --format=json it prints one object: cluster_name, records, backend, kept_as (null when there was no backend), undone (null when it cannot be told, undone_unknown then says why) with one record per item: kind (user_removed, user_reset, user_added, lock_made, lock_lifted, host_removed, host_joined, host_labels_changed, token_used, token_made, role_changed, ca_rotated), subject (the user, lock target, host name, token ID, role or CA), id (the lock's or host's ID, else null), command (what makes it again, null where no command does, or none gives warrenctl the record's values as they are: a label value with a comma, say) and command_unavailable (why command is null). A copy from before a CA rotation holds CAs that rotated devices no longer trust: make a new one after each rotation.",
  examples: ['warrenctl restore /var/backups/warren-2026-12-01.db', "warrenctl restore --format=json /var/backups/warren-2026-12-01.db | jq -r '.undone[]?.command // empty'"],
  run(flags, args) {
    const { dataDir, path } = backendOf(flags)
    // What `warren start` requires of the data dir and the backend's folder, checked before
    // anything is written there, and the same of the folder the copy is taken from.
    checkDataDir(dataDir)
    secureStorageDir(dirname(path))
    secureBackupDir(dirname(resolve(args[0])))
    lockDataDir(dataDir)
    const restored = restoreSqlite(args[0], path)
    const report: RestoreReport = {
      cluster_name: restored.clusterName,
      records: restored.items,
      backend: path,
      kept_as: restored.keptAs ?? null,
      undone: null,
      undone_unknown: null,
    }
    if (!restored.keptAs) report.undone_unknown = 'there was no backend to compare with'
    else {
      try {
        report.undone = undoneItems(restored.keptAs, path)
      } catch (error) {
        report.undone_unknown = `the backend it replaced could not be read: ${(error as Error).message}`
      }
    }
    if (flags.format === 'json') out(JSON.stringify(report, null, 2))
    else printReport(report)
    return 0
  },
})

function printReport(report: RestoreReport): void {
  out(`Restored cluster "${report.cluster_name}" (${report.records} records) to ${report.backend}.`)
  if (report.kept_as === null) {
    out('There was no backend to compare with: whatever was done since the backup is undone.')
    return
  }
  out(`The backend it replaced is kept as ${report.kept_as}.`)
  if (report.undone === null) {
    out(`What this undoes is unknown (${report.undone_unknown}): whatever was done since the backup is undone.`)
    return
  }
  if (report.undone.length === 0) {
    out('Nothing done since the backup is undone.')
    return
  }
  out('Undone, since the audit log is restored too (make again what should stand, once the auth server runs):')
  for (const line of undoneLines(report.undone)) out(`  - ${line}`)
}
