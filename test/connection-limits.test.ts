// A role's max_connections counts a user's SSH connections through every proxy of the
// cluster together: with one held through one proxy, another is refused through either,
// and the slot is free again once the first ends. Real processes: an auth server, two
// proxies behind HAProxy, a node, stock OpenSSH.

import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { legacyAccess } from '../shared/access.ts'
import { x509AccessExtension } from '../shared/access-cert.ts'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { USER_CERT_HEADER } from '../shared/protocol/api.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { createCA, createCertificate } from '../shared/x509.ts'
import { startBalancer } from './helpers/balancer.ts'
import { AuthProcess, freePort, JSON_LOGS, openssh, proxiesBehindBalancer, type RunResult, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
// Behind a load balancer, as proxies run: the node holds a tunnel to each.
const balancer = `127.0.0.1:${await freePort()}`
const proxies = await proxiesBehindBalancer(auth, pin, 2, balancer, undefined, true, JSON_LOGS)
t.teardown(() => Promise.all(proxies.map((proxy) => proxy.stop())))
const lb = startBalancer(balancer, proxies)
t.teardown(() => lb.kill())
const nodeDir = tempDir()
const node = startNode([`--auth-server=${proxies[0].web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=limited-1', `--data-dir=${nodeDir}`])
t.teardown(() => node.stop())
await node.waitForStatus('a tunnel to each proxy', (status: WarrenStatus) => status.node?.tunnel?.proxies.length === 2, 20_000)
await waitForNode(auth, 'limited-1')

const ROLE = `kind: role
version: v1
metadata:
  name: one-at-a-time
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: { '*': '*' }
  options:
    max_connections: 1
`
await auth.create(ROLE)
// Credentials of lim whose ssh_config goes through each proxy: the user is added with the first.
const through = [await signUser(auth, proxies[0].web, 'lim', 'one-at-a-time'), await signUser(auth, proxies[1].web, 'lim')]
const target = `${testLogin()}@limited-1`

t.test('one connection held: another is refused through either proxy, and allowed once it ends', async (t) => {
  const held = spawn('ssh', ['-F', join(through[0], 'ssh_config'), '-o', 'BatchMode=yes', target, 'echo started; sleep 60'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => held.kill('SIGKILL'))
  let output = ''
  held.stdout.on('data', (chunk) => (output += chunk))
  await until('the first connection', () => output.includes('started'), { timeoutMs: 20_000 })

  for (const [i, dir] of through.entries()) {
    const refused = await openssh(dir, [target, 'echo second'])
    t.equal(refused.code, 255, `through proxy ${i + 1}: refused`)
    t.equal(refused.stdout, '')
    t.match(refused.stderr, /holds 1 connection, the most the roles allow \(max_connections 1\)/)
  }
  const logged = proxies.flatMap((proxy) => proxy.daemon.logEntries()).filter((entry) => entry.access_denied === true && entry.user === 'lim')
  t.equal(logged.length, 2, 'each proxy logs its refusal')

  held.kill('SIGTERM')
  await once(held, 'exit')
  // The proxy releases the lease as the connection closes; the next one may race it.
  let again: RunResult | undefined
  await until('a free slot', async () => (again = await openssh(through[1], [target, 'echo again'])).stdout === 'again\n', { timeoutMs: 10_000 })
  t.equal(again?.stdout, 'again\n', 'after the first ended, a connection through the other proxy is allowed')
})

t.test('a user whose roles set no limit holds several at once', async (t) => {
  const dir = await signUser(auth, proxies[0].web, 'free')
  const results = await Promise.all([openssh(dir, [target, 'sleep 1; echo one']), openssh(dir, [target, 'sleep 1; echo two'])])
  t.same(
    results.map((result) => result.stdout),
    ['one\n', 'two\n'],
  )
})

t.test("a proxy's stolen keys cannot fill a user's slots with a name and a limit of their choosing", async (t) => {
  const stolen = loadIdentity(proxies[1].dataDir, 'proxy')!
  const asProxy = new ApiClient({ server: auth.address, caPems: stolen.hostCAPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem })
  t.teardown(() => asProxy.close())
  const status = (request: Promise<unknown>) =>
    request.then(
      () => 200,
      (error) => (error instanceof ApiError ? error.status : error),
    )
  const vouching = (certPem: string) => ({ headers: { [USER_CERT_HEADER]: Buffer.from(certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64').toString('base64') } })

  // The request that once took a lease: a user's name and a limit, on the proxy's word.
  t.equal(
    await status(asProxy.request('POST', '/v1/proxies/connection-leases', { user: 'lim', max: 10_000 })),
    403,
    "a name and a limit in the body: refused, no user's certificate",
  )
  // A certificate of the attacker's making, with the user's name and a limit it chose.
  const forged = createCA('users', 'warren-test')
  const forgedCert = createCertificate({
    subject: { CN: 'lim', O: stolen.clusterName, OU: ['user'] },
    issuer: { CN: 'users', O: stolen.clusterName },
    publicKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    signingKey: forged.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extKeyUsage: ['clientAuth'],
    extensions: [x509AccessExtension({ ...legacyAccess([testLogin()]), max_connections: 10_000 })],
  })
  t.equal(await status(asProxy.call('POST /v1/proxies/connection-leases', {}, vouching(forgedCert))), 403, "a certificate not from the cluster's user CA: refused")
  // A node's keys vouch for nobody: the header is not taken from it.
  const nodeIdentity = loadIdentity(nodeDir)!
  const asNode = new ApiClient({ server: auth.address, caPems: nodeIdentity.hostCAPems, certPem: nodeIdentity.tlsCertPem, keyPem: nodeIdentity.tlsKeyPem })
  t.teardown(() => asNode.close())
  const userCert = readFileSync(join(through[0], 'tls.crt'), 'utf8')
  t.equal(await status(asNode.call('POST /v1/proxies/connection-leases', {}, vouching(userCert))), 403, "a node forwarding a user's certificate: refused")
  // None of them took a slot: the user's one connection goes through.
  const ok = await openssh(through[0], [target, 'echo free'])
  t.equal(ok.stdout, 'free\n', 'the slot is still free')

  // With the user's real certificate the limit is the certificate's (1), whatever the proxy would like.
  // The proxy releases the connection's lease as it closes; this may come first.
  let lease: { lease_id: string } | undefined
  await until(
    'the slot free again',
    async () => {
      lease = await asProxy.call('POST /v1/proxies/connection-leases', {}, vouching(userCert)).catch((error) => {
        if (error instanceof ApiError && error.status === 409) return undefined
        throw error
      })
      return lease !== undefined
    },
    { timeoutMs: 10_000 },
  )
  t.equal(await status(asProxy.call('POST /v1/proxies/connection-leases', {}, vouching(userCert))), 409, "a second lease beyond the certificate's max_connections: refused")
  await asProxy.call('POST /v1/proxies/connection-leases/release', { body: { leases: [{ user: 'lim', lease_id: lease!.lease_id }] } })
  const after = await openssh(through[0], [target, 'echo released'])
  t.equal(after.stdout, 'released\n', 'released, the slot is free again')
})
