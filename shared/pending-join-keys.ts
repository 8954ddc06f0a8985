// The keys of a join whose identity is not stored yet. The auth server may have registered
// them (the token spent, the name held) while the answer was lost: to a crash or a power cut
// before the identity was written, or to a full disk that refused it. Only a try with the
// same keys is answered again then (auth/join-repeat.ts), so they are written before the
// first try, and a start that finds them joins with them, a re-admission's too (a stored
// identity that can no longer be used, with other keys). Once the identity of their join is
// stored they are removed (obtainIdentity). A disk that refuses them does not stop the join: the host is
// reachable now, and only a restart before the disk has room needs a new token.

import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from './files.ts'
import type { JoinKeys } from './join.ts'

/** `join-keys.pem` in the data dir for a node, `proxy-join-keys.pem` for a proxy, next to the identity directories. */
export function pendingJoinKeysPath(dataDir: string, role: string): string {
  return join(dataDir, role === 'node' ? 'join-keys.pem' : `${role}-join-keys.pem`)
}

/** Writes the keys (mode 0600, atomic replace): the TLS key, then the SSH key, as PKCS #8 PEM. */
export function savePendingJoinKeys(dataDir: string, role: string, keys: JoinKeys): void {
  const pem = (key: KeyObject) => key.export({ format: 'pem', type: 'pkcs8' }).toString()
  writeFileAtomic(pendingJoinKeysPath(dataDir, role), pem(keys.tls.privateKey) + pem(keys.ssh.privateKey))
}

/** The keys of an earlier try, or undefined when there are none (or they cannot be read: a new join then uses new ones). */
export function loadPendingJoinKeys(dataDir: string, role: string): JoinKeys | undefined {
  let text: string
  try {
    text = readFileSync(pendingJoinKeysPath(dataDir, role), 'utf8')
  } catch {
    return undefined
  }
  const pems = text.match(/-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n?/g) ?? []
  if (pems.length !== 2) return undefined
  try {
    const [tls, ssh] = pems.map((pem) => createPrivateKey(pem))
    if (ssh.asymmetricKeyType !== 'ed25519') return undefined
    return { tls: { privateKey: tls, publicKey: createPublicKey(tls) }, ssh: { privateKey: ssh, publicKey: createPublicKey(ssh) } }
  } catch {
    return undefined
  }
}

export function forgetPendingJoinKeys(dataDir: string, role: string): void {
  rmSync(pendingJoinKeysPath(dataDir, role), { force: true })
}
