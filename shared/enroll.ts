// A joining role's identity: the one stored in the data dir, or a fresh one obtained with
// the join token (then stored, so the token is never needed again).

import type { WarrenConfig } from './config.ts'
import { parseHostPort, resolveTokenValue } from './config.ts'
import { WarrenError } from './errors.ts'
import type { Logger } from './log.ts'
import { loadIdentity, saveIdentity, type NodeIdentity } from './identity-store.ts'

export async function obtainIdentity(config: WarrenConfig, role: 'node' | 'proxy', log: Logger, warn?: (message: string) => void): Promise<NodeIdentity> {
  const stored = loadIdentity(config.dataDir, role)
  if (stored) {
    log.info(`using the identity stored in ${config.dataDir}`, { host_id: stored.hostId, cluster: stored.clusterName })
    return stored
  }
  const server = config.authServers[0]
  if (!server) throw new WarrenError('no auth server to join: pass --auth-server=HOST:PORT (or auth_servers in the config file)')
  if (!config.authToken) throw new WarrenError(`this ${role} has not joined a cluster yet: pass --token=VALUE (or a file path starting with "/") to join`)
  // Joining is the only use of the HTTPS client here: a stored identity does not load it.
  const { joinCluster } = await import('./join.ts')
  const identity = await joinCluster({
    authServer: server,
    token: resolveTokenValue(config.authToken),
    caPins: config.caPins,
    nodename: config.nodename,
    roles: [role],
    // A proxy's certificates also name its public addresses (its token is an admin's grant).
    publicAddrs: role === 'proxy' ? config.proxy.publicAddrs.map((addr) => parseHostPort(addr, 443).host) : [],
    labels: config.labels,
    warn,
  })
  saveIdentity(config.dataDir, identity, role)
  log.info(`joined cluster "${identity.clusterName}" as ${identity.nodename}`, { host_id: identity.hostId, role })
  return identity
}
