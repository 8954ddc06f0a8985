// How warrenctl finds and authenticates to the auth server: the admin identity that the
// auth server writes into its data dir (or a file given with --identity).

import { readFileSync } from 'node:fs'
import { type AdminIdentityFile, adminIdentityPath } from '../../auth/admin-identity.ts'
import { ApiClient } from '../../shared/api-client.ts'
import { DEFAULTS, loadConfigFile } from '../../shared/config.ts'
import { WarrenError } from '../../shared/errors.ts'

export interface AdminConnection {
  client: ApiClient
  identity: AdminIdentityFile
}

export function connectAdmin(flags: { identity?: string; 'data-dir'?: string; config?: string; 'auth-server'?: string }): AdminConnection {
  const dataDir = flags['data-dir'] ?? (flags.config ? loadConfigFile(flags.config).dataDir : DEFAULTS.dataDir)
  const path = flags.identity ?? adminIdentityPath(dataDir)
  let identity: AdminIdentityFile
  try {
    identity = JSON.parse(readFileSync(path, 'utf8')) as AdminIdentityFile
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message
    throw new WarrenError(`cannot read the admin identity ${path} (${reason}): run warrenctl on the auth server's host, or pass --data-dir or --identity`)
  }
  const server = flags['auth-server'] ?? identity.auth_server
  return { identity, client: new ApiClient({ server, caPems: identity.host_ca_certs, certPem: identity.cert, keyPem: identity.key }) }
}
