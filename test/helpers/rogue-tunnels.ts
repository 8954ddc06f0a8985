// The tunnel server of an attacker who holds a proxy's identity (its data dir stolen): the
// real TunnelServer, under the stolen proxy's ID, for the attack tests.

import { TunnelServer } from '../../proxy/tunnel-server.ts'
import type { NodeIdentity } from '../../shared/identity-store.ts'
import { createLogger } from '../../shared/log.ts'

export function rogueTunnelServer(stolen: NodeIdentity): TunnelServer {
  return new TunnelServer({
    proxyId: stolen.hostId,
    clusterName: stolen.clusterName,
    hostCAPems: () => stolen.hostCAPems,
    keepAliveIntervalMs: 15_000,
    log: createLogger('rogue', { level: 'error' }),
  })
}
