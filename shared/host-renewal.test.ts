// What a host's renewal does with the certificates that come back, renewed or recovered:
// judged before they are put in place, for a holder whose `apply` takes them as they come (a
// proxy's) and one that judges them itself (a node's); a refusal leaves the host's identity
// as it was, is logged at ERROR with a field naming why, and fails the renewal, which the
// schedule then tries again.

import { generateKeyPairSync, randomUUID, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { Authority, newKeySet } from '../auth/authorities.ts'
import { issueHostIdentity, issueServerCredentials } from '../auth/issuer.ts'
import { trustStatement } from '../auth/trust.ts'
import { fakeTimers } from '../test/helpers/fake-timers.ts'
import { MAX_SERVER_WAIT_MS } from './backoff.ts'
import { ApiError } from './errors.ts'
import { HostRenewal } from './host-renewal.ts'
import type { NodeIdentity } from './identity-store.ts'
import { generateJoinKeys } from './join.ts'
import { createLogger } from './log.ts'
import type { RenewedCertificates } from './protocol/hosts.ts'
import { acceptRenewed, CertificatesRefused, SshCertificateRefused } from './renewed-certificates.ts'
import { createSshCertificate, parseSshCertificate } from './ssh-cert.ts'
import { createCA, createCertificate } from './x509.ts'

const DAY = 24 * 3_600_000
const TTL = 30 * DAY

/** A proxy of a cluster (with public addresses, as proxies have), its certificates issued `ageMs` ago. */
function proxyHost(ageMs: number) {
  const hostCA = new Authority({ type: 'host', clusterName: 'c1', keySets: [newKeySet('host', 'c1')] })
  const userCA = new Authority({ type: 'user', clusterName: 'c1', keySets: [newKeySet('user', 'c1')] })
  const hostId = randomUUID()
  const keys = generateJoinKeys()
  const issue = (nowMs: number) =>
    issueHostIdentity(hostCA, {
      hostId,
      nodename: 'proxy-1',
      clusterName: 'c1',
      roles: ['proxy'],
      tlsPublicKey: keys.tls.publicKey,
      sshPublicKey: keys.ssh.publicKey,
      publicAddrs: ['proxy.example.com'],
      ttlMs: TTL,
      nowMs,
    })
  const first = issue(Date.now() - ageMs)
  const identity: NodeIdentity = {
    hostId,
    nodename: 'proxy-1',
    clusterName: 'c1',
    roles: ['proxy'],
    authServers: [],
    tlsKeyPem: keys.tls.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    tlsCertPem: first.tlsCertPem,
    sshKeyPem: keys.ssh.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    sshCert: first.sshCert,
    hostCAPems: hostCA.tlsCertPems,
    userCASshKeys: userCA.sshPublicKeys,
    trustVersion: 0,
  }
  const answer = (change: { ssh?: (tlsCert: X509Certificate) => string; tls?: string } = {}): RenewedCertificates => {
    const issued = issue(Date.now())
    const tlsCert = new X509Certificate(issued.tlsCertPem)
    return {
      tls_cert: change.tls ?? issued.tlsCertPem,
      ssh_cert: change.ssh ? change.ssh(tlsCert) : issued.sshCert,
      host_ca_certs: hostCA.tlsCertPems,
      user_ca_ssh_keys: userCA.sshPublicKeys,
      trust: trustStatement('c1', hostCA, userCA),
    }
  }
  /** An SSH certificate exactly as issued, but signed by a CA key of an attacker's. */
  const attackerSigned = (tlsCert: X509Certificate) =>
    createSshCertificate({
      publicKey: keys.ssh.publicKey,
      caKey: generateKeyPairSync('ed25519').privateKey,
      type: 'host',
      keyId: hostId,
      principals: parseSshCertificate(first.sshCert).principals,
      validAfter: tlsCert.validFromDate,
      validBefore: tlsCert.validToDate,
    })
  /** A TLS certificate for the host's key and ID from a CA that is not the cluster's. */
  const strangerTls = () => {
    const stranger = createCA('c1 host CA', 'c1')
    return createCertificate({
      subject: { CN: hostId, O: 'c1', OU: ['proxy'], name: 'proxy-1' },
      issuer: { CN: 'c1 host CA', O: 'c1' },
      publicKey: keys.tls.publicKey,
      signingKey: stranger.key,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + TTL),
      extKeyUsage: ['serverAuth', 'clientAuth'],
    })
  }
  return { hostCA, identity, answer, attackerSigned, strangerTls }
}

/** A JSON logger whose entries the test reads. */
function capturedLog() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean))
      done()
    },
  })
  const log = createLogger('test', { level: 'debug', format: 'json', stream })
  return { log, entries: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) }
}

/** Runs one renewal; what it threw, if anything. */
async function renewOnce(renewal: HostRenewal): Promise<unknown> {
  try {
    await renewal.renewOrRecoverNow()
    return undefined
  } catch (error) {
    return error
  }
}

t.test("a proxy's renewal: certificates are judged before they are put in place", async (t) => {
  const host = proxyHost(25 * DAY)
  const identity = host.identity
  let answer = host.answer()
  const applied: RenewedCertificates[] = []
  const { log, entries } = capturedLog()
  const renewal = new HostRenewal({ what: "this proxy's certificate", identity: () => identity, renew: async () => answer, apply: (renewed) => applied.push(renewed), log })

  answer = host.answer({ ssh: host.attackerSigned })
  const refused = await renewOnce(renewal)
  t.ok(refused instanceof SshCertificateRefused, 'an SSH certificate from another CA fails the renewal')
  t.equal(applied.length, 0, 'and nothing is put in place')
  const error = entries().find((entry) => entry.level === 'error')
  t.ok(error, 'an ERROR is logged')
  t.equal(error?.ssh_cert_refused, (refused as Error).message, 'with a field naming why')
  t.equal(error?.certificates_refused, (refused as Error).message)
  t.equal(error?.host_id, identity.hostId)

  answer = host.answer({ tls: host.strangerTls() })
  const tlsRefused = await renewOnce(renewal)
  t.ok(tlsRefused instanceof CertificatesRefused && !(tlsRefused instanceof SshCertificateRefused), 'a TLS certificate from another CA fails it too')
  t.equal(applied.length, 0)
  const last = entries()
    .filter((entry) => entry.level === 'error')
    .at(-1)
  t.equal(last?.certificates_refused, (tlsRefused as Error).message)
  t.notOk('ssh_cert_refused' in (last ?? {}), 'not for its SSH certificate')

  answer = host.answer()
  t.equal(await renewOnce(renewal), undefined, 'the certificates the auth server issued are taken')
  t.same(applied, [answer])
})

t.test("a node's renewal: its apply judges, and a refusal is logged the same way", async (t) => {
  const host = proxyHost(25 * DAY)
  const identity = host.identity
  const before = structuredClone(identity)
  const { log, entries } = capturedLog()
  let answer = host.answer({ ssh: host.attackerSigned })
  const renewal = new HostRenewal({
    what: "this node's certificates",
    identity: () => identity,
    renew: async () => answer,
    apply: (renewed) => acceptRenewed(identity, renewed, () => {}),
    applyChecks: true,
    log,
  })
  const refused = await renewOnce(renewal)
  t.ok(refused instanceof SshCertificateRefused, 'refused')
  t.same(identity, before, 'the identity is as it was')
  t.equal(entries().find((entry) => entry.level === 'error')?.ssh_cert_refused, (refused as Error).message)
  answer = host.answer()
  t.equal(await renewOnce(renewal), undefined, 'a sound answer is taken')
  t.equal(identity.sshCert, answer.ssh_cert)
})

/** An auth server's recovery answering `answer()`, at an address with a certificate of `hostCA`. */
async function recoveryServer(t: Test, hostCA: Authority, answer: () => RenewedCertificates): Promise<string> {
  const { keyPem, certPem } = issueServerCredentials(hostCA, { clusterName: 'c1', role: 'auth', names: ['127.0.0.1'] })
  const server = createServer({ key: keyPem, cert: certPem }, async (req, res) => {
    for await (const _ of req);
    const body = req.url === '/v1/join/challenge' ? { nonce: 'n'.repeat(32), expires: Date.now() + 60_000 } : answer()
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return `127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('a recovery (the certificate expired): what comes back is judged the same way', async (t) => {
  const host = proxyHost(TTL + DAY)
  let answer = host.answer({ ssh: host.attackerSigned })
  const identity = { ...host.identity, authServers: [await recoveryServer(t, host.hostCA, () => answer)] }
  const applied: [RenewedCertificates, string][] = []
  const { log, entries } = capturedLog()
  const renewal = new HostRenewal({
    what: "this proxy's certificate",
    identity: () => identity,
    renew: () => Promise.reject(new Error('not asked')),
    apply: (renewed, how) => applied.push([renewed, how]),
    log,
  })
  const refused = await renewOnce(renewal)
  t.ok(refused instanceof SshCertificateRefused, 'an SSH certificate from another CA fails the recovery')
  t.equal(applied.length, 0, 'nothing is put in place')
  t.equal(entries().find((entry) => entry.level === 'error')?.ssh_cert_refused, (refused as Error).message, 'logged with its field')
  answer = host.answer()
  t.equal(await renewOnce(renewal), undefined)
  t.same(applied, [[answer, 'recovered']], 'the certificates the auth server issued are taken')
})

t.test('while renewals fail, trust heard again changes nothing; trust that changed asks again at once', async (t) => {
  const host = proxyHost(DAY)
  const identity = host.identity
  // A rotation under way: the certificate, from a CA still trusted, is due at once; the server cannot be verified.
  const next = new Authority({ type: 'host', clusterName: 'c1', keySets: [newKeySet('host', 'c1')] })
  identity.hostCAPems = [...next.tlsCertPems, ...host.hostCA.tlsCertPems]
  const time = fakeTimers(Date.now())
  const tries: number[] = []
  const renewal = new HostRenewal({
    what: "this proxy's certificate",
    identity: () => identity,
    renew: async () => {
      tries.push(time.clock())
      throw new Error('unable to verify the first certificate')
    },
    apply: () => {},
    log: capturedLog().log,
    schedule: { clock: time.clock, timers: time.timers, random: () => 0.999 },
  })
  t.teardown(() => renewal.stop())
  renewal.start()
  await time.advanceTo(time.clock() + 15 * 60_000)
  const failed = tries.length
  t.ok(failed >= 8 && failed <= 15, `failing, with backoff (${failed} tries in 15 minutes)`)
  // Just after a try: the next is minutes away.
  while (tries.length === failed) await time.advanceTo(time.clock() + 1000)
  const after = tries.length

  renewal.trustChanged()
  await time.advanceTo(time.clock() + 10_000)
  t.equal(tries.length, after, 'the same CAs heard again: no try before the backoff says')

  const bridged = new Authority({ type: 'host', clusterName: 'c1', keySets: [newKeySet('host', 'c1')] })
  identity.hostCAPems = [...bridged.tlsCertPems, ...identity.hostCAPems]
  renewal.trustChanged()
  await time.advanceTo(time.clock() + 1000)
  t.equal(tries.length, after + 1, 'CAs that changed: tried again at once')
  await time.advanceTo(time.clock() + 60_000)
  t.equal(tries.length, after + 1, 'and that failure is backed off from where it was')
})

t.test('a refusal that names a time to wait (Retry-After) is tried again no sooner, and at most 10 minutes on', async (t) => {
  for (const [retryAfterS, expectedMs] of [
    [120, 120_000],
    [86_400, MAX_SERVER_WAIT_MS],
  ]) {
    const host = proxyHost(DAY)
    // Due at once: the CA that signs now did not issue it.
    const next = new Authority({ type: 'host', clusterName: 'c1', keySets: [newKeySet('host', 'c1')] })
    host.identity.hostCAPems = [...next.tlsCertPems, ...host.hostCA.tlsCertPems]
    const time = fakeTimers(Date.now())
    const tries: number[] = []
    const renewal = new HostRenewal({
      what: "this proxy's certificate",
      identity: () => host.identity,
      renew: async () => {
        tries.push(time.clock())
        throw new ApiError(429, 'too many renewals from this address', retryAfterS)
      },
      apply: () => {},
      log: capturedLog().log,
      schedule: { clock: time.clock, timers: time.timers, random: () => 0.999 },
    })
    renewal.start()
    await time.advanceTo(time.clock() + 1000)
    t.equal(tries.length, 1, 'tried once')
    renewal.trustChanged()
    await time.advanceTo(tries[0]! + expectedMs - 1)
    t.equal(tries.length, 1, `not again within the ${expectedMs / 1000} s the answer asked for (Retry-After: ${retryAfterS}), nudged or not`)
    await time.advanceTo(tries[0]! + expectedMs + 1)
    t.equal(tries.length, 2, 'then again')
    t.equal(renewal.state.failures, 2)
    renewal.stop()
  }
})
