// A proxy's tunnel port for tests of the proxy's own parts: a TunnelServer behind a real TLS
// listener that asks for host certificates, as proxy.ts serves it, closed at the test's end.

import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { createServer, type TLSSocket } from 'node:tls'
import type { Test } from 'tap'
import type { ProxyAssignedLabels } from '../../proxy/assigned-labels.ts'
import { NodeDialer } from '../../proxy/node-dialer.ts'
import type { TunnelServer } from '../../proxy/tunnel-server.ts'
import type { Logger } from '../../shared/log.ts'
import { TUNNEL_ALPN } from '../../shared/protocol/tunnel.ts'
import type { createCA } from '../../shared/x509.ts'
import { loopbackCert } from './certs.ts'

/** A host certificate from `ca`, the host CA of cluster `cluster`, with the subject Warren gives hosts. */
export function hostCertificate(ca: ReturnType<typeof createCA>, cluster: string, commonName: string, role: string): { cert: string; key: string } {
  const { certPem, keyPem } = loopbackCert({ ca, name: { CN: `${cluster} host CA`, O: cluster } }, { CN: commonName, O: cluster, OU: [role], name: commonName }, [
    'serverAuth',
    'clientAuth',
  ])
  return { cert: certPem, key: keyPem }
}

/** Serves `tunnels` on a loopback port with the proxy `proxyId`'s certificate; its port. */
export async function serveTunnels(t: Test, tunnels: TunnelServer, ca: ReturnType<typeof createCA>, cluster: string, proxyId: string): Promise<number> {
  const { cert, key } = hostCertificate(ca, cluster, proxyId, 'proxy')
  const server = createServer({ cert, key, ca: [ca.certPem], requestCert: true, rejectUnauthorized: false, ALPNProtocols: [TUNNEL_ALPN] }, (socket: TLSSocket) =>
    tunnels.handle(socket, '127.0.0.1'),
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    tunnels.close()
    server.close()
  })
  return (server.address() as AddressInfo).port
}

/** A NodeDialer that reaches nodes through `tunnels` only (no direct nodes), with the labels `assigned` holds in place. */
export function tunnelDialer(tunnels: TunnelServer, assigned: ProxyAssignedLabels, ca: ReturnType<typeof createCA>, cluster: string, log: Logger): NodeDialer {
  return new NodeDialer({
    tunnels,
    judgedLabels: (hostId, reported) => assigned.judged(hostId, reported),
    directNodes: async () => [],
    clusterName: cluster,
    credentials: () => ({ keyPem: '', certPem: '', hostCAPems: [ca.certPem] }),
    keepAliveIntervalMs: 15_000,
    log,
  })
}
