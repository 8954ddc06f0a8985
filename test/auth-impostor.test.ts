// Another proxy's keys answering at the auth server's address (the address taken over: its
// name or its IP, while the auth server is down): the keys pass TLS verification against the cluster's host CA, but they
// are not an auth server's. A real proxy process pointed there must send it nothing (no
// heartbeat, no presence of its nodes) and take nothing from it (the live set, the CAs to
// trust), and so refuse to start, as it does when the auth server cannot be reached.

import { once } from 'node:events'
import { createServer } from 'node:https'
import t from 'tap'
import { parseHostPort } from '../shared/address.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { AuthProcess, Daemon, ProxyProcess } from './helpers/cluster.ts'

t.test("a proxy sends nothing to, and takes nothing from, another proxy's keys at the auth server's address", { timeout: 120_000 }, async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxies: ProxyProcess[] = []
  for (const nodename of ['proxy-a', 'proxy-b']) {
    const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, nodename }).start()
    t.teardown(() => proxy.stop())
    proxies.push(proxy)
  }
  const [victim, stolen] = proxies as [ProxyProcess, ProxyProcess]
  await victim.stop()
  await stolen.stop()

  // The impostor: proxy-b's certificate and key, answering every request as an auth server would.
  const keys = loadIdentity(stolen.dataDir, 'proxy')!
  const requests: string[] = []
  const impostor = createServer({ cert: keys.tlsCertPem, key: keys.tlsKeyPem, ca: keys.hostCAPems, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    requests.push(`${req.method} ${req.url}`)
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ proxies: [], host_ca_certs: keys.hostCAPems }))
  })
  // The auth server's address is taken over (the auth server itself is down, say).
  await auth.stop()
  const { host, port } = parseHostPort(auth.address, 0)
  impostor.listen(port, host)
  await once(impostor, 'listening')
  t.teardown(() => impostor.close())

  // proxy-a, joined already, restarts.
  const restarted = new Daemon(['start', '--roles=proxy', `--config=${victim.configPath}`])
  t.teardown(() => restarted.stop())
  const code = await restarted.exited
  t.not(code, 0, `the proxy does not start (${restarted.stderr.trim().split('\n').pop()})`)
  t.same(requests, [], 'the impostor received no request')
})
