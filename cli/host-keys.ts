// The host keys OpenSSH checks a node against: for every connection `warren proxy ssh` (the
// ProxyCommand) asks the proxy it dials for the node's current key, signed by the cluster's
// host CA within 15 minutes, and writes it to known_hosts.d/HOST, the one file the ssh_config
// names (by OpenSSH's %h token), before it passes on the node's first byte. So a node that
// joined after the login is checked as strictly, and one removed since is not known at all,
// without a KnownHostsCommand, which OpenSSH runs twice per connection: two more programs
// started for every ssh and scp.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { WarrenError } from '../shared/errors.ts'
import { writeFileAtomic } from '../shared/files.ts'
import { splitPems } from '../shared/identity-store.ts'
import type { KnownHosts } from '../shared/protocol/logins.ts'
import { knownHostsSigned } from '../shared/signed-known-hosts.ts'
import { checkCredentialsDir, loadProfile, profilePath, proxyApiClient } from './profile.ts'

/** The folder of one known_hosts file per host, in a credentials directory. */
export const HOST_KEYS_DIR = 'known_hosts.d'

/**
 * The cluster's node host keys as known_hosts lines, asked of a proxy with the user's
 * certificate: only as a host CA of the login signed them, since the proxy could otherwise
 * name a key of its own for a node (shared/signed-known-hosts.ts).
 */
export async function fetchKnownHosts(dir: string, proxy: string | undefined): Promise<string[]> {
  const client = proxyApiClient(dir, proxy)
  let answer: KnownHosts
  try {
    answer = await client.call('GET /v1/known-hosts')
  } finally {
    await client.close()
  }
  const hostCAs = splitPems(readFileSync(profilePath(dir, 'hostCA'), 'utf8'))
  if (!knownHostsSigned(loadProfile(dir).cluster_name, answer.known_hosts, answer.known_hosts_signatures, hostCAs)) {
    throw new WarrenError("the proxy's host keys are not signed by the cluster's host CA: none were taken")
  }
  return answer.known_hosts
}

/** The file OpenSSH reads for `host` (its %h), or undefined when the name cannot be a file's. */
export function hostKeysFile(dir: string, host: string): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]*$/.test(host)) return undefined
  return join(dir, HOST_KEYS_DIR, host)
}

/** The lines of `lines` that name `host`, as OpenSSH matches names: without regard to case. */
export function linesNaming(lines: string[], host: string): string[] {
  const wanted = host.toLowerCase()
  return lines.filter((line) => (line.split(' ')[0] ?? '').toLowerCase().split(',').includes(wanted))
}

/** Empties `host`'s known_hosts.d file, so that OpenSSH knows no key for it. */
export function forgetHostKeys(dir: string, host: string): void {
  checkCredentialsDir(dir)
  const file = hostKeysFile(dir, host)
  if (file) writeFileAtomic(file, '', 0o644)
}

/** Writes the proxy's current host keys of `host` to its known_hosts.d file (none: an empty file). */
export async function refreshHostKeys(dir: string, proxy: string | undefined, host: string): Promise<void> {
  checkCredentialsDir(dir)
  const file = hostKeysFile(dir, host)
  if (!file) return
  const lines = linesNaming(await fetchKnownHosts(dir, proxy), host)
  writeFileAtomic(file, lines.map((line) => line + '\n').join(''), 0o644)
}
