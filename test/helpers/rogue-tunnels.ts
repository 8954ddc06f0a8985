// The tunnel server of an attacker who holds a proxy's identity (its data dir stolen): the
// real TunnelServer, under the stolen proxy's ID, for the attack tests.

import { once } from 'node:events'
import { createServer, type Server, type TLSSocket } from 'node:tls'
import { TunnelServer } from '../../proxy/tunnel-server.ts'
import type { NodeIdentity } from '../../shared/identity-store.ts'
import { createLogger } from '../../shared/log.ts'
import { TUNNEL_ALPN } from '../../shared/protocol/tunnel.ts'

export function rogueTunnelServer(stolen: NodeIdentity): TunnelServer {
  return new TunnelServer({
    proxyId: stolen.hostId,
    clusterName: stolen.clusterName,
    hostCAPems: () => stolen.hostCAPems,
    keepAliveIntervalMs: 15_000,
    log: createLogger('rogue', { level: 'error' }),
  })
}

/**
 * The stolen proxy's tunnel address (HOST:PORT, the proxy stopped), served with its
 * certificate: each node that dials it is handed to `rogue`.
 */
export async function listenAsStolenProxy(stolen: NodeIdentity, address: string, rogue: TunnelServer): Promise<Server> {
  const at = address.lastIndexOf(':')
  const listener = createServer(
    { cert: stolen.tlsCertPem, key: stolen.tlsKeyPem, ca: stolen.hostCAPems, requestCert: true, rejectUnauthorized: false, ALPNProtocols: [TUNNEL_ALPN] },
    (socket: TLSSocket) => rogue.handle(socket, '127.0.0.1'),
  )
  listener.listen(Number(address.slice(at + 1)), address.slice(0, at))
  await once(listener, 'listening')
  return listener
}
