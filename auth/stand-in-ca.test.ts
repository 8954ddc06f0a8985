// The stand-in CAs an auth server makes for its own certificates while a CA's certificate has
// expired (auth/own-credentials.ts), judged as the server judges callers (auth/callers.ts),
// with an injected clock two days past a CA that lived one: the admin identity the user CA's
// stand-in signs is taken until the rotation that replaces the expired CA has the new one in
// the identity file and steps on (update_servers), then never again, not in a later rotation
// either, though it has days left; what a stand-in signs is never a host's nor a user's; the
// identity file names the host CA's stand-in (server_ca_certs) only while that CA is expired.

import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { TLSSocket } from 'node:tls'
import t, { type Test } from 'tap'
import { legacyAccess } from '../shared/access.ts'
import { issuedByAny } from '../shared/cert-subject.ts'
import { createLogger } from '../shared/log.ts'
import { fakeTimers } from '../test/helpers/fake-timers.ts'
import { type AdminIdentityFile, adminIdentityPath } from './admin-identity.ts'
import { Authority, type AuthorityType, newKeySet, type RotationPhase, type StoredAuthority } from './authorities.ts'
import { Callers, type Judged } from './callers.ts'
import { issueAdminCredentials, issueHostIdentity } from './issuer.ts'
import { OwnCredentials, type TlsOptions } from './own-credentials.ts'
import { step } from './rotation.ts'
import { issueUserCertificates } from './users.ts'

const DAY = 86_400_000
const CLUSTER = 'c1'
const log = createLogger('test', { level: 'error' })

/** A connection whose TLS handshake presented `pem`: judged, and closed when it no longer authenticates anyone. */
function connection(pem: string) {
  const cert = new X509Certificate(pem)
  const socket = { authorized: true, getPeerX509Certificate: () => cert, once: () => socket, remoteAddress: '127.0.0.1', closed: false, destroy: () => void (socket.closed = true) }
  return socket as typeof socket & TLSSocket
}

/**
 * An auth server's own certificates and its judge of callers, as auth/server.ts wires them,
 * with its CAs' certificates ending in `days` (1: expired by the clock, which starts two days on).
 */
function server(t: Test, days: { host: number; user: number }) {
  const time = fakeTimers(Date.now() + 2 * DAY)
  const stored: Record<AuthorityType, StoredAuthority> = {
    host: { type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER, days.host)] },
    user: { type: 'user', clusterName: CLUSTER, keySets: [newKeySet('user', CLUSTER, days.user)] },
  }
  const cas = { host: new Authority(stored.host), user: new Authority(stored.user) }
  const dataDir = t.testdir()
  const applied: TlsOptions[] = []
  const own = new OwnCredentials({
    hostCA: () => cas.host,
    userCA: () => cas.user,
    clusterName: CLUSTER,
    serverNames: ['127.0.0.1'],
    hostCertTtlMs: 30 * DAY,
    adminCertTtlMs: 7 * DAY,
    dataDir,
    address: () => '127.0.0.1:3025',
    apply: (options) => applied.push(options),
    log,
    schedule: { clock: time.clock, timers: time.timers, random: () => 0.5 },
  })
  const callers = new Callers({
    clusterName: () => CLUSTER,
    hostCAPems: () => cas.host.tlsCertPems,
    userCAPems: () => cas.user.tlsCertPems,
    adminCAPems: () => own.adminStandInPems(),
    refusedHost: () => undefined,
    refusedUser: () => undefined,
    log,
    clock: time.clock,
  })
  applied.push(own.tlsOptions())
  own.writeAdminIdentity()
  own.start()
  t.teardown(() => own.stop())
  return {
    time,
    cas,
    own,
    callers,
    /** The TLS options in place now. */
    tls: () => applied[applied.length - 1],
    identity: () => JSON.parse(readFileSync(adminIdentityPath(dataDir), 'utf8')) as AdminIdentityFile,
    /** A step of a rotation, as the server follows it: its certificates again, every connection judged again. */
    rotate: (type: AuthorityType, phase: RotationPhase | 'rollback') => {
      stored[type] = step(stored[type], phase, 'manual', DAY, time.clock())
      cas[type] = new Authority(stored[type])
      own.reissue()
      callers.trustChanged()
    },
    judge: (pem: string): Judged => callers.judge(connection(pem)),
  }
}

const issuedBy = (pem: string, caPems: string[]) => issuedByAny(new X509Certificate(pem), caPems)
const kind = (judged: Judged) => judged.peer?.kind ?? `refused: ${judged.reason}`

t.test("the user CA expired alone: the stand-in's admin identity is taken until the rotation replacing it steps past update_clients, then never again", async (t) => {
  const s = server(t, { host: 3650, user: 1 })
  t.ok(s.cas.user.expired(s.time.clock()), 'the user CA has expired by the injected clock')
  t.notOk(s.cas.user.expired(Date.now()), 'and not by the real one: the clock is passed through')
  const standIns = s.own.adminStandInPems()
  t.equal(standIns.length, 1, 'a stand-in for the user CA')
  const first = s.identity()
  t.ok(issuedBy(first.cert, standIns), 'the admin identity is signed by it')
  t.notOk(issuedBy(first.cert, s.cas.user.tlsCertPems), 'not by the expired user CA')
  t.equal(first.server_ca_certs, undefined, 'the host CA is valid: no server_ca_certs')
  t.ok(issuedBy(s.tls().cert, s.cas.host.tlsCertPems), "the server's TLS certificate is the host CA's")
  t.ok(s.tls().ca.includes(standIns[0]), 'TLS asks for client certificates from the stand-in too')
  t.equal(kind(s.judge(first.cert)), 'admin')
  const live = connection(first.cert)
  t.equal(kind(s.callers.judge(live)), 'admin')

  s.rotate('user', 'init')
  t.equal(kind(s.judge(first.cert)), 'admin', 'init: the expired CA still signs, the stand-in stands in')
  t.ok(issuedBy(s.identity().cert, standIns), 'the identity file is still from the stand-in')
  s.rotate('user', 'update_clients')
  const renewed = s.identity()
  t.ok(issuedBy(renewed.cert, [s.cas.user.signing.tlsCertPem]), 'update_clients: the identity file is from the new CA')
  t.equal(kind(s.judge(renewed.cert)), 'admin')
  t.equal(kind(s.callers.judge(live)), 'admin', 'the connection that stepped the rotation is answered')
  t.notOk(live.closed)

  s.rotate('user', 'update_servers')
  const validFor = new X509Certificate(first.cert).validToDate.getTime() - s.time.clock()
  t.ok(validFor > 6 * DAY, 'the first identity has days left')
  t.equal(kind(s.judge(first.cert)), 'refused: the certificate is not from a CA this cluster trusts', 'update_servers: the stand-in is trusted no more')
  t.ok(live.closed, 'the connection made with it is closed')
  t.same(s.own.adminStandInPems(), [])
  t.notOk(s.tls().ca.includes(standIns[0]), 'nor does TLS take certificates from it')
  t.equal(kind(s.judge(renewed.cert)), 'admin', 'the identity from the new CA is taken')
  s.rotate('user', 'standby')
  t.equal(kind(s.judge(first.cert)), 'refused: the certificate is not from a CA this cluster trusts', 'standby')

  // A routine rotation later on: the stand-in does not come back.
  for (const phase of ['init', 'update_clients', 'update_servers', 'standby'] as const) {
    s.time.step(DAY / 4)
    s.rotate('user', phase)
    t.equal(kind(s.judge(first.cert)), 'refused: the certificate is not from a CA this cluster trusts', `a later rotation, ${phase}`)
    t.same(s.own.adminStandInPems(), [], `a later rotation, ${phase}: no stand-in`)
    t.notOk(s.tls().ca.includes(standIns[0]))
    t.equal(kind(s.judge(s.identity().cert)), 'admin')
  }
  t.equal(s.identity().server_ca_certs, undefined)
})

t.test('a rollback to the expired user CA has a stand-in stand in again, a new one once the first was forgotten', async (t) => {
  const s = server(t, { host: 3650, user: 1 })
  const first = s.own.adminStandInPems()
  s.rotate('user', 'init')
  s.rotate('user', 'rollback')
  t.same(s.own.adminStandInPems(), first, 'rolled back from init: the same stand-in')
  s.rotate('user', 'init')
  s.rotate('user', 'update_clients')
  s.rotate('user', 'update_servers')
  t.same(s.own.adminStandInPems(), [])
  s.rotate('user', 'rollback')
  const again = s.own.adminStandInPems()
  t.equal(again.length, 1, 'rolled back from update_servers: the CA is expired again, and stood in for')
  t.not(again[0], first[0], 'by a new stand-in: the forgotten one never comes back')
  t.ok(issuedBy(s.identity().cert, again))
})

t.test('the host CA expired alone: server_ca_certs names its stand-in only until the rotation has a valid CA signing', async (t) => {
  const s = server(t, { host: 1, user: 3650 })
  const first = s.identity()
  t.equal(first.server_ca_certs?.length, 1, 'the identity file names the host CA stand-in')
  t.ok(issuedBy(s.tls().cert, first.server_ca_certs!), "which signs the server's TLS certificate")
  t.notOk(issuedBy(s.tls().cert, s.cas.host.tlsCertPems))
  t.ok(issuedBy(first.cert, s.cas.user.tlsCertPems), 'the admin identity is from the valid user CA')
  t.same(s.own.adminStandInPems(), [], 'and no stand-in is taken for it')
  t.equal(kind(s.judge(first.cert)), 'admin')
  t.equal(kind(s.judge(s.tls().cert)), 'refused: the certificate is not from a CA this cluster trusts', "the stand-in's certificate is not a host's")

  s.rotate('host', 'init')
  t.same(s.identity().server_ca_certs, first.server_ca_certs, 'init: the expired CA still signs, the stand-in stands in')
  t.ok(issuedBy(s.tls().cert, first.server_ca_certs!))
  s.rotate('host', 'update_clients')
  t.equal(s.identity().server_ca_certs, undefined, 'update_clients: the new CA signs, and server_ca_certs is gone')
  t.ok(issuedBy(s.tls().cert, [s.cas.host.signing.tlsCertPem]), "the server's TLS certificate is the new host CA's")
  t.same(s.identity().host_ca_certs, s.cas.host.tlsCertPems, 'which the identity file trusts')
  for (const phase of ['update_servers', 'standby', 'init', 'update_clients'] as const) {
    s.rotate('host', phase)
    t.equal(s.identity().server_ca_certs, undefined, phase)
    t.ok(issuedBy(s.tls().cert, s.cas.host.tlsCertPems))
  }
})

t.test('both CAs expired: two stand-ins, neither taken for the other', async (t) => {
  const s = server(t, { host: 1, user: 1 })
  const identity = s.identity()
  const [forAdmin] = s.own.adminStandInPems()
  const [forServer] = identity.server_ca_certs!
  t.not(forAdmin, forServer)
  t.ok(issuedBy(identity.cert, [forAdmin]))
  t.ok(issuedBy(s.tls().cert, [forServer]))
  t.notOk(s.tls().ca.includes(forServer), "TLS takes no client certificate from the host CA's stand-in")
  t.equal(kind(s.judge(identity.cert)), 'admin')
  t.equal(kind(s.judge(s.tls().cert)), 'refused: the certificate is not from a CA this cluster trusts')
})

t.test("what a stand-in signs is the admin identity or nothing: never a host's, never a user's", async (t) => {
  // A CA taken as the admin identity's (adminCAPems), as the user CA's stand-in is.
  const standIn = new Authority({ type: 'user', clusterName: CLUSTER, keySets: [newKeySet('user', CLUSTER)] })
  const host = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  const user = new Authority({ type: 'user', clusterName: CLUSTER, keySets: [newKeySet('user', CLUSTER)] })
  const callers = new Callers({
    clusterName: () => CLUSTER,
    hostCAPems: () => host.tlsCertPems,
    userCAPems: () => user.tlsCertPems,
    adminCAPems: () => standIn.tlsCertPems,
    refusedHost: () => undefined,
    refusedUser: () => undefined,
    log,
  })
  const keys = () => ({ tls: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey, ssh: generateKeyPairSync('ed25519').publicKey })
  const judge = (pem: string) => kind(callers.judge(connection(pem)))
  const hostCert = (ca: Authority, roles: string[]) => {
    const { tls, ssh } = keys()
    return issueHostIdentity(ca, { hostId: 'h1', nodename: 'n1', clusterName: CLUSTER, roles, tlsPublicKey: tls, sshPublicKey: ssh }).tlsCertPem
  }
  for (const roles of [['node'], ['proxy'], ['auth']]) {
    t.equal(judge(hostCert(host, roles)), 'host', `the host CA's ${roles}`)
    t.match(judge(hostCert(standIn, roles)), /^refused: /, `the stand-in's ${roles}: not a host`)
  }
  const userCert = (ca: Authority) => {
    const record = { name: 'alice', logins: ['root'], roles: ['editor'], created: 0, generation: 'g1' }
    return issueUserCertificates(ca, CLUSTER, record, keys(), 3600_000, { ...legacyAccess(['root']), admin: true }).tlsCertPem
  }
  t.equal(judge(userCert(standIn)), 'refused: not an admin certificate', "the stand-in's user certificate: not on a connection")
  const proxy = callers.judge(connection(hostCert(host, ['proxy']))).peer!
  const vouched = (pem: string) => kind(callers.judgeForwardedUser(proxy, new X509Certificate(pem).raw.toString('base64')))
  t.equal(vouched(userCert(user)), 'user', "the user CA's, vouched for by a proxy")
  t.equal(vouched(userCert(standIn)), 'refused: user certificate: the certificate is not from a CA this cluster trusts', "the stand-in's: not vouched for either")
  const admin = issueAdminCredentials(standIn, CLUSTER).certPem
  t.equal(judge(admin), 'admin', "the stand-in's admin identity: the admin")
  t.equal(vouched(admin), 'refused: user certificate: the certificate is not from a CA this cluster trusts', 'and no user')
})
