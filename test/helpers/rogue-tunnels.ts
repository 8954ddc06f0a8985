// The tunnel server of an attacker who holds a proxy's identity (its data dir stolen): the
// real TunnelServer, under the stolen proxy's ID, for the attack tests.

import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createServer, type Server, type TLSSocket } from 'node:tls'
import type { Test } from 'tap'
import { type Tunnel, TunnelServer } from '../../proxy/tunnel-server.ts'
import { ApiClient } from '../../shared/api-client.ts'
import { loadIdentity, type NodeIdentity } from '../../shared/identity-store.ts'
import { createLogger } from '../../shared/log.ts'
import type { RenewedCertificates } from '../../shared/protocol/hosts.ts'
import { TUNNEL_ALPN } from '../../shared/protocol/tunnel.ts'
import { AuthProcess, JSON_LOGS, ProxyProcess, startNode, tempDir, waitForNode } from './cluster.ts'
import { until } from './until.ts'

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

/**
 * A node, pi-1 (JSON logs), that joined through a proxy whose keys were then stolen: the proxy
 * stopped, and its tunnel address served by the attacker, to which the node reconnected. The
 * auth server issues certificates of a minute, so the node asks the attacker for its renewal
 * about 40 s after it joined: `requests` gathers each such request, and `renewAsProxy` asks
 * the real auth server for the genuine answer as the proxy would (trusting `caPems`).
 */
export async function nodeBehindStolenProxy(t: Test) {
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 60s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const nodeDir = tempDir()
  const config = join(tempDir(), 'node.yaml')
  writeFileSync(config, JSON_LOGS)
  const node = startNode([`--config=${config}`, `--data-dir=${nodeDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-1'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'pi-1')

  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  await proxy.stop()
  const rogue = rogueTunnelServer(stolen)
  const listener = await listenAsStolenProxy(stolen, proxy.tunnel, rogue)
  t.teardown(() => {
    rogue.close()
    listener.close()
  })
  const requests: Tunnel[] = []
  rogue.on('renew', (tunnel: Tunnel) => requests.push(tunnel))
  await until('the node to reconnect to the stolen address', () => rogue.size === 1, { timeoutMs: 30_000 })

  const renewAsProxy = async (tunnel: Tunnel, caPems = stolen.hostCAPems): Promise<RenewedCertificates> => {
    const api = new ApiClient({ server: auth.address, caPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem, authServer: true })
    try {
      return await api.call('POST /v1/hosts/renew', { body: { tls_cert: tunnel.cert.toString() } })
    } finally {
      await api.close()
    }
  }
  return { auth, node, nodeDir, stolen, requests, renewAsProxy }
}
