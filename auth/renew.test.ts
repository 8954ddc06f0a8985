// Renewals against a real SQLite registry and real CAs, with an injected clock: what may be
// renewed (the registered key and roles), and when (the renewal window, a CA rotation), and
// that repeated requests are answered from the last renewal instead of signing again.

import { X509Certificate } from 'node:crypto'
import { join as joinPath } from 'node:path'
import t, { type Test } from 'tap'
import { certSubject } from '../shared/cert-subject.ts'
import { generateJoinKeys } from '../shared/join.ts'
import { sshPublicKeyLine } from '../shared/ssh-cert.ts'
import { refusal } from '../test/helpers/refusal.ts'
import { Authority, newKeySet, type StoredKeySet } from './authorities.ts'
import { SqliteBackend } from './backend/sqlite.ts'
import { HOST_CERT_TTL_MS, issueHostIdentity } from './issuer.ts'
import { publicKeyFingerprint } from './key-policy.ts'
import { NodeDirectory } from './nodes.ts'
import { Renewals } from './renew.ts'

const CLUSTER = 'c1'
/** Far enough into a host certificate's life that it is due: past two thirds of it. */
const DUE = Math.round(HOST_CERT_TTL_MS * 0.7)

async function setup(t: Test) {
  const backend = SqliteBackend.open(joinPath(t.testdir(), 'backend.db'))
  t.teardown(() => backend.close())
  let keySets: StoredKeySet[] = [newKeySet('host', CLUSTER)]
  let hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets })
  const nodes = new NodeDirectory(backend, 30_000)
  let now = Date.now()
  const renewals = new Renewals({ hostCA: () => hostCA, nodes, clusterName: CLUSTER, clock: () => now })
  /** A registered host and its certificate, as a join leaves them. */
  const register = async (hostId: string, roles: string[] = ['node']) => {
    const keys = generateJoinKeys()
    const record = {
      hostId,
      nodename: hostId.slice(0, 8),
      roles,
      joinedAt: now,
      sshPublicKey: sshPublicKeyLine(keys.ssh.publicKey),
      tlsKeySha256: publicKeyFingerprint(keys.tls.publicKey),
    }
    const plan = await nodes.planRegistration(record, { replaceHolder: false })
    await backend.txn(plan.conditions, plan.operations)
    return { keys, certPem: issueHostIdentity(hostCA, { ...record, clusterName: CLUSTER, tlsPublicKey: keys.tls.publicKey, sshPublicKey: keys.ssh.publicKey }).tlsCertPem }
  }
  /** A new key set signs; the previous one is still trusted (update_clients). */
  const rotate = () => {
    keySets = [newKeySet('host', CLUSTER), keySets[0]]
    hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets })
  }
  return { backend, nodes, renewals, register, rotate, advance: (ms: number) => (now += ms), hostCA: () => hostCA }
}

const HOST = '11111111-2222-4333-8444-555555555555'

t.test('a certificate is renewed in the last third of its lifetime, not before', async (t) => {
  const { renewals, register, advance } = await setup(t)
  const { certPem } = await register(HOST)
  const due = new X509Certificate(certPem).validToDate.getTime() - Math.floor((HOST_CERT_TTL_MS + 60_000) / 3)
  t.match(await refusal(renewals.renew(certPem, { nodeOnly: true })), {
    status: 409,
    message: `the certificate of host ${HOST} is not due for renewal until ${new Date(due).toISOString()}`,
  })
  advance(DUE)
  const renewed = await renewals.renew(certPem, { nodeOnly: true })
  t.equal(renewed.issued, true)
  t.equal(certSubject(renewed.tlsCertPem).commonName, HOST)
  t.equal(renewals.issuedCount, 1)
})

t.test('further requests get the last renewal; the renewed certificate itself is not due', async (t) => {
  const { renewals, register, advance } = await setup(t)
  const { certPem } = await register(HOST)
  advance(DUE)
  const results = await Promise.all(Array.from({ length: 50 }, () => renewals.renew(certPem, { nodeOnly: true })))
  t.equal(renewals.issuedCount, 1, 'fifty requests at once, one issuance')
  t.equal(new Set(results.map((r) => r.tlsCertPem)).size, 1, 'all got the same certificate')
  await t.rejects(renewals.renew(results[0].tlsCertPem, { nodeOnly: true }), /not due for renewal until/, 'the new certificate is not due')
  t.equal(renewals.issuedCount, 1)
})

t.test('a CA rotation makes a renewal due at once, once', async (t) => {
  const { renewals, register, rotate, hostCA } = await setup(t)
  const { certPem } = await register(HOST)
  rotate()
  const renewed = await renewals.renew(certPem, { nodeOnly: true })
  t.ok(new X509Certificate(renewed.tlsCertPem).verify(new X509Certificate(hostCA().tlsCertPems[0]).publicKey), 'signed by the new CA')
  for (let i = 0; i < 20; i++) await renewals.renew(certPem, { nodeOnly: true })
  t.equal(renewals.issuedCount, 1, 'the old certificate presented again gets the same answer')
  rotate()
  t.equal((await renewals.renew(renewed.tlsCertPem, { nodeOnly: true })).issued, true, 'the next rotation renews again')
})

t.test('only the registered key, roles and host are renewed', async (t) => {
  const { renewals, register, nodes, hostCA, rotate } = await setup(t)
  const { keys } = await register(HOST)
  rotate()
  const record = (await nodes.get(HOST))!
  const other = generateJoinKeys()
  const base = { ...record, clusterName: CLUSTER, sshPublicKey: keys.ssh.publicKey }
  const otherKey = issueHostIdentity(hostCA(), { ...base, tlsPublicKey: other.tls.publicKey }).tlsCertPem
  t.match(await refusal(renewals.renew(otherKey, { nodeOnly: false })), { status: 403, message: `the certificate's key is not the TLS key registered for host ${HOST}` })
  const moreRoles = issueHostIdentity(hostCA(), { ...base, roles: ['node', 'proxy'], tlsPublicKey: keys.tls.publicKey }).tlsCertPem
  t.match(await refusal(renewals.renew(moreRoles, { nodeOnly: false })), {
    status: 403,
    message: `the certificate's roles (node,proxy) are not the roles host ${HOST} was registered with (node)`,
  })

  const proxy = await register('22222222-2222-4333-8444-555555555555', ['proxy'])
  rotate()
  await t.rejects(renewals.renew(proxy.certPem, { nodeOnly: true }), /is not a node: it renews with its own certificate/, "a proxy cannot renew a proxy on a node's behalf")
  t.equal((await renewals.renew(proxy.certPem, { nodeOnly: false })).issued, true, 'but renews itself')

  const removed = await register('33333333-2222-4333-8444-555555555555')
  await nodes.remove('33333333-2222-4333-8444-555555555555')
  rotate()
  await t.rejects(renewals.renew(removed.certPem, { nodeOnly: false }), /is not registered in this cluster/, 'a removed host cannot renew')

  const foreign = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  const fromElsewhere = issueHostIdentity(foreign, { ...base, tlsPublicKey: keys.tls.publicKey }).tlsCertPem
  await t.rejects(renewals.renew(fromElsewhere, { nodeOnly: false }), /not from this cluster's host CA/)
})

t.test("the registry records the expiry of the host's latest certificates", async (t) => {
  const { nodes, renewals, register, advance, rotate } = await setup(t)
  const { certPem } = await register(HOST)
  advance(DUE)
  const renewed = await renewals.renew(certPem, { nodeOnly: true })
  const expiry = (pem: string) => new X509Certificate(pem).validToDate.getTime()
  t.equal((await nodes.get(HOST))?.certExpires, expiry(renewed.tlsCertPem), "the renewed certificate's notAfter")
  t.equal(renewed.expires, expiry(renewed.tlsCertPem))
  // A rotation starts while the node's next renewal is on its way: the renewal after it is
  // from the new CA, and the registry follows it.
  const pending = renewals.renew(renewed.tlsCertPem, { nodeOnly: true })
  rotate()
  advance(1000)
  const afterRotation = await pending
  t.equal(afterRotation.issued, true, 'due at once: the CA that signs changed')
  t.equal((await nodes.get(HOST))?.certExpires, expiry(afterRotation.tlsCertPem))
})

t.test('requests queued behind a renewal are answered from it, one issuance in all', async (t) => {
  const { nodes, renewals, register, advance } = await setup(t)
  const { certPem } = await register(HOST)
  advance(DUE)
  const first = renewals.renew(certPem, { nodeOnly: true })
  const more = Array.from({ length: 10 }, () => renewals.renew(certPem, { nodeOnly: true }))
  const results = await Promise.all([first, ...more])
  t.same(
    results.map((r) => r.issued),
    [true, ...more.map(() => false)],
  )
  t.equal(renewals.issuedCount, 1)
  t.equal((await nodes.get(HOST))?.certExpires, results[0].expires)
})

t.test('a host removed while its renewal waits is refused, and its record stays removed', async (t) => {
  const { nodes, renewals, register, advance } = await setup(t)
  const { certPem } = await register(HOST)
  advance(DUE)
  const renewal = renewals.renew(certPem, { nodeOnly: true })
  await nodes.remove(HOST)
  t.match(await refusal(renewal), { status: 403, message: `host ${HOST} is not registered in this cluster` })
  t.equal(await nodes.get(HOST), undefined, 'the renewal did not write the record back')
  t.equal(renewals.issuedCount, 0)
})

t.test('the lifetime is the configured one', async (t) => {
  const backend = SqliteBackend.open(joinPath(t.testdir(), 'backend.db'))
  t.teardown(() => backend.close())
  const hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  const nodes = new NodeDirectory(backend, 30_000)
  let now = Date.now()
  const renewals = new Renewals({ hostCA: () => hostCA, nodes, clusterName: CLUSTER, hostCertTtlMs: 15_000, clock: () => now })
  const keys = generateJoinKeys()
  const record = {
    hostId: HOST,
    nodename: 'short',
    roles: ['node'],
    joinedAt: now,
    sshPublicKey: sshPublicKeyLine(keys.ssh.publicKey),
    tlsKeySha256: publicKeyFingerprint(keys.tls.publicKey),
  }
  const plan = await nodes.planRegistration(record, { replaceHolder: false })
  await backend.txn(plan.conditions, plan.operations)
  let pem = issueHostIdentity(hostCA, { ...record, clusterName: CLUSTER, tlsPublicKey: keys.tls.publicKey, sshPublicKey: keys.ssh.publicKey, ttlMs: 15_000, nowMs: now }).tlsCertPem
  for (let lifetime = 0; lifetime < 3; lifetime++) {
    now += 11_000
    const renewed = await renewals.renew(pem, { nodeOnly: true })
    const cert = new X509Certificate(renewed.tlsCertPem)
    t.equal(cert.validToDate.getTime() - Math.floor(now / 1000) * 1000, 15_000, `renewal ${lifetime + 1} lives 15 s`)
    pem = renewed.tlsCertPem
  }
})
