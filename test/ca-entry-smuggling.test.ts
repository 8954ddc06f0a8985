// A hijacked address answers GET /v1/ca with one entry holding the cluster's real CA and,
// after it, one of its own: the pin read from the entry is the real one, but TLS given the
// entry as `ca:` trusts both, and so the impostor's server. A join and a login refuse such an
// entry before anything else goes to the impostor.

import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { fetchTrustedCA, joinCluster } from '../shared/join.ts'
import { caPin } from '../shared/pin.ts'
import { loopbackCert, testCA } from './helpers/certs.ts'
import { tempDir, warren } from './helpers/cluster.ts'

const real = testCA('test-cluster host CA', 'test-cluster').ca.certPem
const pin = caPin(real)

/** An HTTPS server whose certificate the impostor's CA signed; it answers GET /v1/ca with `real + own` in one entry and records every request. */
async function impostor(t: Test) {
  const own = testCA('impostor CA', 'test-cluster')
  const { certPem: cert, keyPem: key } = loopbackCert(own, { CN: 'impostor', O: 'test-cluster', OU: ['auth'] }, ['serverAuth'])
  const requests: string[] = []
  const server = createServer({ key, cert }, (req, res) => {
    requests.push(`${req.method} ${req.url}`)
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(req.url === '/v1/ca' ? { cluster_name: 'test-cluster', host_ca_certs: [real + own.ca.certPem] } : {}))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, requests }
}

t.test('a join refuses an entry of two certificates, though the first matches the pin', async (t) => {
  const fake = await impostor(t)
  await t.rejects(
    fetchTrustedCA(fake.address, [pin], () => {}),
    /holds 2 certificates/,
  )
  await t.rejects(
    joinCluster({ authServer: fake.address, token: 'the-join-token', caPins: [pin], nodename: 'pi-smuggled', roles: ['node'], warn: () => {} }),
    /holds 2 certificates/,
  )
  t.same(fake.requests, ['GET /v1/ca', 'GET /v1/ca'], 'nothing but the CA was asked for: no TLS session trusted the impostor')
})

t.test('a login refuses it too, with --ca-pin and without', async (t) => {
  const fake = await impostor(t)
  const env = { WARREN_HOME: tempDir('warren-home-') }
  const pinned = await warren(['login', `--proxy=${fake.address}`, `--ca-pin=${pin}`, '--invite=the-invitation'], { env, input: '' })
  t.not(pinned.code, 0)
  t.match(pinned.stderr, /holds 2 certificates/)
  const unpinned = await warren(['login', `--proxy=${fake.address}`, '--invite=the-invitation'], { env, input: '' })
  t.not(unpinned.code, 0)
  t.match(unpinned.stderr, /holds 2 certificates/, 'refused before a pin is shown for confirmation')
  t.same(fake.requests, ['GET /v1/ca', 'GET /v1/ca'], 'nothing but the CA was asked for')
})
