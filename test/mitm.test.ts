// A hijacked auth server address: an HTTPS server with another CA answers in its place.
// With a pin, the agent must refuse before the token is sent.

import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { loopbackCert, testCA } from './helpers/certs.ts'
import { AuthProcess, startNode, tempDir } from './helpers/cluster.ts'

const auth = new AuthProcess()
t.before(() => auth.start())
t.teardown(() => auth.stop())

/** A server with its own CA that records every request; `advertised` is the CA it claims. */
async function impostor(advertisedCAs: (ownCA: string) => string[]) {
  const own = testCA('impostor CA', 'test-cluster')
  const { certPem: cert, keyPem } = loopbackCert(own, { CN: 'impostor', O: 'test-cluster', OU: ['auth'] }, ['serverAuth'])
  const ca = own.ca
  const requests: { method: string; url: string; body: string }[] = []
  const server = createServer({ key: keyPem, cert }, (req, res) => {
    let body = ''
    req.on('data', (d) => (body += d))
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', body })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(req.url === '/v1/ca' ? { cluster_name: 'test-cluster', host_ca_certs: advertisedCAs(ca.certPem) } : {}))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, requests, close: () => new Promise((r) => server.close(r)) }
}

t.test('an impostor with its own CA never receives the token', async (t) => {
  const fake = await impostor((own) => [own])
  t.teardown(fake.close)
  const token = await auth.token()
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${fake.address}`, `--token=${token}`, `--ca-pin=${await auth.pin()}`, '--nodename=pi-mitm'])
  t.not(await node.exited, 0)
  t.match(node.stderr, /CA pin mismatch/)
  t.same(
    fake.requests.map((r) => r.url),
    ['/v1/ca'],
    'only the CA was fetched',
  )
  t.notOk(
    fake.requests.some((r) => r.body.includes(token)),
    'the token was never sent',
  )
})

t.test('an impostor that copies the real CA (and lists its own beside it) cannot complete TLS for the join', async (t) => {
  const identity = JSON.parse((await import('node:fs')).readFileSync(auth.identityPath, 'utf8'))
  const fake = await impostor((own) => [...identity.host_ca_certs, own])
  t.teardown(fake.close)
  const token = await auth.token()
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${fake.address}`, `--token=${token}`, `--ca-pin=${await auth.pin()}`, '--nodename=pi-mitm2'])
  t.not(await node.exited, 0)
  t.same(
    fake.requests.map((r) => r.url),
    ['/v1/ca'],
    'the join request never arrived',
  )
  t.notOk(
    fake.requests.some((r) => r.body.includes(token)),
    'the token was never sent',
  )
})
