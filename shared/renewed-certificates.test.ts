// Renewed certificates as a proxy relays them: taken only for this host's keys and host ID,
// from a host CA it trusts, and no older than the ones it holds; the SSH host certificate
// only as the host CA's SSH key signed it for this host's SSH key and what its TLS
// certificate names, in that certificate's dates.

import { createPublicKey, generateKeyPairSync, type KeyObject, randomUUID, X509Certificate } from 'node:crypto'
import t, { type Test } from 'tap'
import { Authority, newKeySet } from '../auth/authorities.ts'
import { issueHostIdentity } from '../auth/issuer.ts'
import { trustStatement } from '../auth/trust.ts'
import type { NodeIdentity } from './identity-store.ts'
import { generateJoinKeys } from './join.ts'
import type { RenewedCertificates } from './protocol/hosts.ts'
import { acceptRenewed, CertificatesRefused, SshCertificateRefused } from './renewed-certificates.ts'
import { createSshCertificate, parseSshCertificate, SSH_CERT_FOREVER, sshPublicKeyLine } from './ssh-cert.ts'
import { signTrust, type TrustStatement } from './trust-statement.ts'
import { createCA, createCertificate } from './x509.ts'

const HOUR = 3_600_000
const NOW = Date.now()
const hostCA = createCA('c1 host CA', 'c1')
const stranger = createCA('attacker host CA', 'c1')
const sshCA = generateKeyPairSync('ed25519').privateKey
const tlsKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const sshKeys = generateKeyPairSync('ed25519')
const HOST_ID = '0b8c5a3e-8a43-4d1f-9a3c-2f1e6b7d9c10'

function tlsCert(options: { ca?: typeof hostCA; publicKey?: KeyObject; hostId?: string; issuedAt?: number } = {}): string {
  const ca = options.ca ?? hostCA
  const issuedAt = options.issuedAt ?? NOW
  return createCertificate({
    subject: { CN: options.hostId ?? HOST_ID, O: 'c1', OU: ['node'], name: 'pi-1' },
    issuer: { CN: ca === hostCA ? 'c1 host CA' : 'attacker host CA', O: 'c1' },
    publicKey: options.publicKey ?? tlsKeys.publicKey,
    signingKey: ca.key,
    notBefore: new Date(issuedAt - 60_000),
    notAfter: new Date(issuedAt + HOUR),
    extKeyUsage: ['serverAuth', 'clientAuth'],
  })
}

function sshCert(options: { publicKey?: KeyObject; principals?: string[]; validBefore?: number } = {}): string {
  return createSshCertificate({
    publicKey: options.publicKey ?? sshKeys.publicKey,
    caKey: sshCA,
    type: 'host',
    keyId: HOST_ID,
    principals: options.principals ?? [HOST_ID, 'pi-1'],
    validAfter: new Date(NOW - 60_000),
    validBefore: new Date(options.validBefore ?? NOW + HOUR),
  })
}

const held = (): NodeIdentity => ({
  hostId: HOST_ID,
  nodename: 'pi-1',
  clusterName: 'c1',
  roles: ['node'],
  authServers: [],
  tlsKeyPem: tlsKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  tlsCertPem: tlsCert({ issuedAt: NOW - 2 * HOUR }),
  sshKeyPem: sshKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  sshCert: sshCert(),
  hostCAPems: [hostCA.certPem],
  userCASshKeys: [sshPublicKeyLine(generateKeyPairSync('ed25519').publicKey)],
  trustVersion: 0,
})
const answer = (tls_cert: string, ssh_cert = sshCert()) => ({ tls_cert, ssh_cert, host_ca_certs: [], user_ca_ssh_keys: [] })
const noTrust = () => {}

t.test('certificates for our keys from our CA are taken', async (t) => {
  const identity = held()
  const renewed = tlsCert()
  t.equal(acceptRenewed(identity, answer(renewed), noTrust, NOW), false, 'no CAs changed')
  t.equal(identity.tlsCertPem, renewed)
})

t.test('what a proxy cannot hand a node', async (t) => {
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey
  const cases: [string, ReturnType<typeof answer>][] = [
    ["a certificate from a CA the node does not trust, for the node's key", answer(tlsCert({ ca: stranger }))],
    ['a certificate for another key', answer(tlsCert({ publicKey: other }))],
    ['a certificate naming another host', answer(tlsCert({ hostId: '9d1e52aa-0f6b-4c4e-a1f7-2b6f0d3c9e11' }))],
    ["one of the node's own earlier certificates", answer(tlsCert({ issuedAt: NOW - 3 * HOUR }))],
    ['an SSH certificate for another key', answer(tlsCert(), sshCert({ publicKey: generateKeyPairSync('ed25519').publicKey }))],
    ['an SSH certificate that does not name the host', answer(tlsCert(), sshCert({ principals: ['pi-2'] }))],
    ['an expired SSH certificate', answer(tlsCert(), sshCert({ validBefore: NOW - 1000 }))],
  ]
  for (const [what, renewed] of cases) {
    const identity = held()
    const before = { ...identity }
    let refused: unknown
    try {
      acceptRenewed(identity, renewed, noTrust, NOW)
    } catch (error) {
      refused = error
    }
    t.ok(refused instanceof CertificatesRefused, `${what}: refused`)
    t.same(identity, before, `${what}: nothing changes`)
  }
})

// The SSH host certificate, with certificates as the auth server issues them (auth/issuer.ts)
// and a signed set of CAs as it signs it (auth/trust.ts): a proxy relaying a renewal, or any
// bug, must not get a node to take one it would not have issued.

const TTL = 30 * 24 * HOUR

/** A host that joined a cluster: its identity as stored, and the auth server's side. */
function cluster(options: { roles?: string[]; publicAddrs?: string[]; nodename?: string } = {}) {
  const hostId = randomUUID()
  const nodename = options.nodename ?? 'pi-1'
  const roles = options.roles ?? ['node']
  let hostCA = new Authority({ type: 'host', clusterName: 'c1', keySets: [newKeySet('host', 'c1')] })
  const userCA = new Authority({ type: 'user', clusterName: 'c1', keySets: [newKeySet('user', 'c1')] })
  const keys = generateJoinKeys()
  const issue = (nowMs: number) =>
    issueHostIdentity(hostCA, {
      hostId,
      nodename,
      clusterName: 'c1',
      roles,
      tlsPublicKey: keys.tls.publicKey,
      sshPublicKey: keys.ssh.publicKey,
      publicAddrs: options.publicAddrs,
      ttlMs: TTL,
      nowMs,
    })
  const first = issue(NOW - 25 * 24 * HOUR)
  const identity: NodeIdentity = {
    hostId,
    nodename,
    clusterName: 'c1',
    roles,
    authServers: [],
    tlsKeyPem: keys.tls.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    tlsCertPem: first.tlsCertPem,
    sshKeyPem: keys.ssh.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    sshCert: first.sshCert,
    hostCAPems: hostCA.tlsCertPems,
    hostCASshKeys: hostCA.sshPublicKeys,
    userCASshKeys: userCA.sshPublicKeys,
    trustVersion: hostCA.changedAt + userCA.changedAt,
  }
  /** The auth server's answer to a renewal at `nowMs`, with its SSH certificate replaced when asked. */
  const renewal = (nowMs = NOW, ssh?: (issued: { tlsCert: X509Certificate; sshCert: string }) => string) => {
    const issued = issue(nowMs)
    const tlsCert = new X509Certificate(issued.tlsCertPem)
    return {
      tls_cert: issued.tlsCertPem,
      ssh_cert: ssh ? ssh({ tlsCert, sshCert: issued.sshCert }) : issued.sshCert,
      host_ca_certs: hostCA.tlsCertPems,
      user_ca_ssh_keys: userCA.sshPublicKeys,
      trust: trustStatement('c1', hostCA, userCA),
    }
  }
  /** An SSH certificate made with any CA key and fields, the rest as the issuer would have them. */
  const forge = (tlsCert: X509Certificate, change: Partial<Parameters<typeof createSshCertificate>[0]> = {}) =>
    createSshCertificate({
      publicKey: keys.ssh.publicKey,
      caKey: hostCA.signing.sshKey,
      type: 'host',
      keyId: hostId,
      principals: sshPrincipals(first.sshCert),
      validAfter: tlsCert.validFromDate,
      validBefore: tlsCert.validToDate,
      ...change,
    })
  /** A host CA rotation to the step where the new key set signs (init, then update_clients, auth/rotation.ts). */
  const rotate = () => {
    const changedAt = hostCA.changedAt + 1000
    hostCA = new Authority({ type: 'host', clusterName: 'c1', keySets: [newKeySet('host', 'c1'), hostCA.keySets[0]!].map(storedKeySet), changedAt })
  }
  /** A set as an auth server of an earlier version (or a relay that took the SSH keys out) hands it: signed for the other fields only. */
  const keyless = (): TrustStatement =>
    signTrust(
      { cluster_name: 'c1', version: hostCA.changedAt + userCA.changedAt, host_ca_certs: hostCA.tlsCertPems, user_ca_ssh_keys: userCA.sshPublicKeys },
      hostCA.keySets.map((set) => ({ certPem: set.tlsCertPem, key: set.tlsKey })),
    )
  return { identity, renewal, forge, rotate, keyless, hostCA: () => hostCA, keys, hostId }
}

function storedKeySet(set: Authority['keySets'][number] | ReturnType<typeof newKeySet>): ReturnType<typeof newKeySet> {
  if ('tlsKeyPem' in set) return set
  return {
    tlsCertPem: set.tlsCertPem,
    tlsKeyPem: set.tlsKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    sshPublicKey: set.sshPublicKey,
    sshPrivateKeyPem: set.sshKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  }
}

const sshPrincipals = (line: string) => parseSshCertificate(line).principals

/** Whether `renewed` is refused for its SSH certificate, `identity` left as it was; the refusal's message. */
function refusedForSsh(t: Test, identity: NodeIdentity, renewed: RenewedCertificates, what: string, now = NOW): string {
  const before = structuredClone(identity)
  let refused: unknown
  try {
    acceptRenewed(identity, renewed, noTrust, now)
  } catch (error) {
    refused = error
  }
  t.ok(refused instanceof SshCertificateRefused, `${what}: refused for its SSH certificate${refused ? ` (${(refused as Error).message})` : ''}`)
  t.same(identity, before, `${what}: nothing changes`)
  return (refused as Error | undefined)?.message ?? ''
}

t.test('an SSH host certificate as the auth server issues it is taken', async (t) => {
  const host = cluster()
  const renewed = host.renewal()
  t.equal(acceptRenewed(host.identity, renewed, noTrust, NOW), false)
  t.equal(host.identity.sshCert, renewed.ssh_cert, 'the new SSH certificate is held')
  t.equal(host.identity.tlsCertPem, renewed.tls_cert)

  // A proxy's names its configured public addresses too, an IPv6 one among them.
  const proxy = cluster({ roles: ['proxy'], publicAddrs: ['proxy.example.com', '192.0.2.7', '2001:db8::7'] })
  const proxyRenewed = proxy.renewal()
  t.same(sshPrincipals(proxyRenewed.ssh_cert), [proxy.hostId, 'pi-1', 'proxy.example.com', '192.0.2.7', '2001:db8::7'])
  t.doesNotThrow(() => acceptRenewed(proxy.identity, proxyRenewed, noTrust, NOW), 'a proxy’s, with its public addresses')

  // A node whose clock is behind the auth server's: both certificates start after its now.
  const behind = cluster()
  const early = behind.renewal(NOW + 10 * 60_000)
  t.doesNotThrow(() => acceptRenewed(behind.identity, early, noTrust, NOW), 'a start ahead of this clock that is the TLS certificate’s own')
})

t.test('what a proxy (or a bug) cannot get a node to take as its SSH host certificate', async (t) => {
  const attackerCA = generateKeyPairSync('ed25519').privateKey
  const cases: [string, (host: ReturnType<typeof cluster>) => RenewedCertificates][] = [
    ["another CA's signature, every field as issued", (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { caKey: attackerCA }))],
    [
      "the host CA's key named as the signer, another key's signature",
      (host) =>
        host.renewal(NOW, ({ tlsCert }) => {
          const forged = host.forge(tlsCert, { caKey: attackerCA })
          // The signer's key blob swapped for the host CA's: the signature no longer verifies.
          const blob = Buffer.from(forged.split(' ')[1]!, 'base64')
          const attackerBlob = Buffer.from(sshPublicKeyLine(createPublicKey(attackerCA)).split(' ')[1]!, 'base64')
          const caBlob = Buffer.from(sshPublicKeyLine(createPublicKey(host.hostCA().signing.sshKey)).split(' ')[1]!, 'base64')
          const at = blob.indexOf(attackerBlob)
          caBlob.copy(blob, at)
          return `${forged.split(' ')[0]} ${blob.toString('base64')}`
        }),
    ],
    ['a user certificate from the host CA', (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { type: 'user' }))],
    ['a host certificate for another key', (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { publicKey: generateKeyPairSync('ed25519').publicKey }))],
    ['an extra principal', (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { principals: [...sshPrincipals(host.identity.sshCert), 'db-1'] }))],
    ['wrong principals', (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { principals: [host.hostId, 'pi-2', 'pi-2'] }))],
    ['no principals (any name, to OpenSSH)', (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { principals: [] }))],
    ['expired', (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { validBefore: new Date(NOW - 1000) }))],
    ['not yet valid', (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { validAfter: new Date(NOW + HOUR) }))],
    ['outliving its TLS certificate', (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { validBefore: SSH_CERT_FOREVER }))],
    ['starting before its TLS certificate', (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { validAfter: new Date(NOW - 90 * 24 * HOUR) }))],
    ['a critical option', (host) => host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { criticalOptions: { 'force-command': '/bin/true' } }))],
    ["the host's own earlier SSH certificate, sent again", (host) => host.renewal(NOW, () => host.identity.sshCert)],
    ['garbage', (host) => host.renewal(NOW, () => 'garbage')],
    ['an SSH public key', (host) => host.renewal(NOW, () => sshPublicKeyLine(host.keys.ssh.publicKey))],
    ['nothing', (host) => host.renewal(NOW, () => '')],
  ]
  for (const [what, renewal] of cases) {
    const host = cluster()
    refusedForSsh(t, host.identity, renewal(host), what)
  }
})

t.test('across a host CA rotation the SSH key that signs changes with the TLS CA, and only with it', async (t) => {
  const host = cluster()
  const before = host.hostCA()
  host.rotate()
  // Once the new key set signs, the TLS certificate comes from the new CA: its SSH key is taken with it.
  const rotated = host.renewal()
  t.equal(acceptRenewed(host.identity, rotated, noTrust, NOW), true, 'the set with the new CA is taken')
  t.equal(host.identity.sshCert, rotated.ssh_cert, 'with the SSH certificate the new key signed')

  // From then on the new SSH key is the one: the old CA's SSH key (still trusted for TLS) no longer signs for this host.
  const later = host.renewal(NOW + 21 * 24 * HOUR, ({ tlsCert }) => host.forge(tlsCert, { caKey: before.signing.sshKey }))
  refusedForSsh(t, host.identity, later, 'a certificate from the SSH key of the CA rotated out', NOW + 21 * 24 * HOUR)
  t.doesNotThrow(() => acceptRenewed(host.identity, host.renewal(NOW + 21 * 24 * HOUR), noTrust, NOW + 21 * 24 * HOUR), 'one from the new key is')
})

t.test('at a rotation the SSH certificate is held to the new host CA’s SSH key, as the signed set names it', async (t) => {
  // The weakness this closes: with a TLS certificate from another host CA, a host took the SSH key the certificate named.
  const attackerCA = generateKeyPairSync('ed25519').privateKey
  const host = cluster()
  const before = host.hostCA()
  host.rotate()
  const forged = host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { caKey: attackerCA }))
  t.match(
    refusedForSsh(t, host.identity, forged, 'the genuine TLS certificate from the new CA, an SSH certificate from a key of its own'),
    /SSH key of the host CA that issued its TLS certificate/,
  )
  // Both keys are in the set; only the one of the CA that issued the TLS certificate signs with it.
  refusedForSsh(
    t,
    host.identity,
    host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { caKey: before.signing.sshKey })),
    'an SSH certificate from the old CA’s SSH key',
  )
  // The set taken out, the new CA is not trusted: nothing is taken.
  const stripped = { ...host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { caKey: attackerCA })), trust: host.keyless() }
  const unchanged = structuredClone(host.identity)
  const refusals: string[] = []
  t.throws(
    () => acceptRenewed(host.identity, stripped, (reason) => refusals.push(reason), NOW),
    { message: /not from a host CA this host trusts/ },
    'the set without its SSH keys: refused',
  )
  t.match(refusals, [/without their SSH keys/], 'for the set, which names other host CAs without their SSH keys')
  t.same(host.identity, unchanged, 'nothing changes')

  const genuine = host.renewal()
  t.equal(acceptRenewed(host.identity, genuine, noTrust, NOW), true, 'the genuine answer is taken')
  t.same(host.identity.hostCASshKeys, host.hostCA().sshPublicKeys, 'with the SSH keys of both CAs')
})

t.test('a host whose set named no SSH keys (an identity from before them)', async (t) => {
  const attackerCA = generateKeyPairSync('ed25519').privateKey
  const migrated = () => {
    const host = cluster()
    delete host.identity.hostCASshKeys
    return host
  }
  // From an auth server of this version: the keys come with the set, at the version held, and the certificate is held to them.
  const host = migrated()
  refusedForSsh(
    t,
    host.identity,
    host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { caKey: attackerCA })),
    'a certificate from another key, the set naming the keys',
  )
  t.equal(acceptRenewed(host.identity, host.renewal(), noTrust, NOW), true, 'the genuine answer is taken, and its set (the same CAs, with their SSH keys)')
  t.same(host.identity.hostCASshKeys, host.hostCA().sshPublicKeys)

  // At a rotation, the set that makes the new CA trusted brings its SSH key: one of the relay's is refused.
  const rotating = migrated()
  rotating.rotate()
  refusedForSsh(
    t,
    rotating.identity,
    rotating.renewal(NOW, ({ tlsCert }) => rotating.forge(tlsCert, { caKey: attackerCA })),
    'at a rotation, a certificate from another key',
  )
  t.equal(acceptRenewed(rotating.identity, rotating.renewal(), noTrust, NOW), true, 'and the genuine one taken')

  // From an auth server of an earlier version: as before, the key that signed the certificate held.
  const earlier = migrated()
  const keyless = (renewed: RenewedCertificates) => ({ ...renewed, trust: earlier.keyless() })
  t.match(
    refusedForSsh(t, earlier.identity, keyless(earlier.renewal(NOW, ({ tlsCert }) => earlier.forge(tlsCert, { caKey: attackerCA }))), 'without keys, another key'),
    /signed the one this host holds/,
  )
  t.doesNotThrow(() => acceptRenewed(earlier.identity, keyless(earlier.renewal()), noTrust, NOW), 'without keys, the key held')
  t.equal(earlier.identity.hostCASshKeys, undefined, 'and still none')
})

t.test('a host holding the SSH keys keeps them with a set of the same CAs that does not name them', async (t) => {
  const host = cluster()
  const keys = host.identity.hostCASshKeys
  const renewed = {
    ...host.renewal(NOW + HOUR),
    trust: signTrust(
      { ...host.keyless(), version: host.identity.trustVersion + 1 },
      host.hostCA().keySets.map((set) => ({ certPem: set.tlsCertPem, key: set.tlsKey })),
    ),
  }
  t.equal(acceptRenewed(host.identity, renewed, noTrust, NOW + HOUR), true, 'a newer set from an auth server of an earlier version is taken')
  t.same(host.identity.hostCASshKeys, keys, 'the SSH keys held stay')
  const attackerCA = generateKeyPairSync('ed25519').privateKey
  refusedForSsh(
    t,
    host.identity,
    host.renewal(NOW + 2 * HOUR, ({ tlsCert }) => host.forge(tlsCert, { caKey: attackerCA })),
    'and hold the next certificate',
    NOW + 2 * HOUR,
  )
})

t.test('a host holding no readable SSH certificate takes a sound one from the key it names', async (t) => {
  const host = cluster()
  host.identity.sshCert = ''
  const attackerCA = generateKeyPairSync('ed25519').privateKey
  t.doesNotThrow(() => acceptRenewed({ ...host.identity }, host.renewal(), noTrust, NOW), 'as issued')
  const tampered = host.renewal(NOW, ({ tlsCert }) => {
    const forged = host.forge(tlsCert, { caKey: attackerCA })
    const blob = Buffer.from(forged.split(' ')[1]!, 'base64')
    blob[blob.length - 1]! ^= 1 // the signature's last byte
    return `${forged.split(' ')[0]} ${blob.toString('base64')}`
  })
  refusedForSsh(t, host.identity, tampered, 'a signature that does not verify')
  refusedForSsh(
    t,
    host.identity,
    host.renewal(NOW, ({ tlsCert }) => host.forge(tlsCert, { caKey: attackerCA, principals: ['pi-1'] })),
    'missing its host ID',
  )
})
