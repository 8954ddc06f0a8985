// How warrenctl finds and authenticates to the auth server: the admin identity that the
// auth server writes into its data dir (or a file given with --identity), else, or with
// --proxy, the credentials of `warren login` through a proxy's web port, for a person
// whose roles grant editor (the auth server decides).

import { readFileSync } from 'node:fs'
import { type AdminIdentityFile, adminIdentityPath } from '../../auth/admin-identity.ts'
import { ApiClient } from '../../shared/api-client.ts'
import { DEFAULTS, loadConfigFile } from '../../shared/config.ts'
import { formatUtc } from '../../shared/duration.ts'
import { UsageError, WarrenError } from '../../shared/errors.ts'
import { splitPems } from '../../shared/identity-store.ts'
import { logins } from '../login.ts'
import { adminProxyApiClient, profilePath } from '../profile.ts'

export interface AdminConnection {
  client: ApiClient
  /** The local admin identity, when that is who calls. */
  identity?: AdminIdentityFile
  /** The cluster, and the host CAs this connection trusts (what answers relayed by a proxy are checked against). */
  cluster: string
  hostCAs: string[]
}

export interface AdminFlags {
  identity?: string
  'data-dir'?: string
  config?: string
  'auth-server'?: string
  proxy?: string
  cluster?: string
}

export function connectAdmin(flags: AdminFlags, now = Date.now()): AdminConnection {
  const local = flags.identity !== undefined || flags['data-dir'] !== undefined || flags.config !== undefined || flags['auth-server'] !== undefined
  if (flags.proxy !== undefined || flags.cluster !== undefined) {
    if (local) throw new UsageError('--proxy and --cluster use the credentials of warren login: they do not go with --identity, --data-dir, --config or --auth-server')
    return connectAsUser(flags, now)
  }
  const dataDir = flags['data-dir'] ?? (flags.config ? loadConfigFile(flags.config).dataDir : DEFAULTS.dataDir)
  const path = flags.identity ?? adminIdentityPath(dataDir)
  let identity: AdminIdentityFile
  try {
    identity = JSON.parse(readFileSync(path, 'utf8')) as AdminIdentityFile
  } catch (error) {
    // Away from the auth host: the person logged in, if there is one.
    if (!local && logins().length > 0) return connectAsUser(flags, now)
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message
    throw new WarrenError(
      `cannot read the admin identity ${path} (${reason}): run warrenctl on the auth server's host, or pass --data-dir or --identity, or log in with "warren login --proxy=HOST:PORT" as a user with the role editor`,
    )
  }
  const server = flags['auth-server'] ?? identity.auth_server
  return {
    identity,
    client: new ApiClient({ server, caPems: [...identity.host_ca_certs, ...(identity.server_ca_certs ?? [])], certPem: identity.cert, keyPem: identity.key, authServer: true }),
    cluster: identity.cluster_name,
    hostCAs: identity.host_ca_certs,
  }
}

/**
 * The current login's credentials (of --cluster when there are several), through a proxy's
 * web port: its certificate is checked against the cluster's CA saved at login.
 */
function connectAsUser(flags: AdminFlags, now: number): AdminConnection {
  const all = logins()
  const found = all.filter(({ profile }) => flags.cluster === undefined || profile.cluster_name === flags.cluster)
  if (found.length === 0) {
    const which = flags.cluster === undefined ? 'any cluster' : `cluster "${flags.cluster}"`
    throw new WarrenError(`not logged in to ${which}: log in with "warren login --proxy=HOST:PORT"`)
  }
  if (found.length > 1) {
    throw new UsageError(`logged in to several clusters (${found.map(({ profile }) => profile.cluster_name).join(', ')}): pick one with --cluster=NAME`)
  }
  const { dir, profile } = found[0]
  if (profile.valid_before <= now) {
    throw new WarrenError(`the login of ${profile.user} to cluster "${profile.cluster_name}" expired at ${formatUtc(profile.valid_before)}: log in again with "warren login"`)
  }
  return {
    client: adminProxyApiClient(dir, flags.proxy, 'no proxy known for this login: pass --proxy=HOST:PORT'),
    cluster: profile.cluster_name,
    hostCAs: splitPems(readFileSync(profilePath(dir, 'hostCA'), 'utf8')),
  }
}
