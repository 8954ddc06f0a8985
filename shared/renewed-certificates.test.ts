// Renewed certificates as a proxy relays them: taken only for this host's keys and host ID,
// from a host CA it trusts, and no older than the ones it holds.

import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import t from 'tap'
import type { NodeIdentity } from './identity-store.ts'
import { acceptRenewed, CertificatesRefused } from './renewed-certificates.ts'
import { createSshCertificate, sshPublicKeyLine } from './ssh-cert.ts'
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
