// The client takes certificates only for the keys it made: a proxy that swapped the keys of
// a login (or an answer for someone else) hands back certificates the client refuses
// before it writes anything.

import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import t from 'tap'
import { signCurrentTrust } from '../shared/current-trust.ts'
import type { UserCerts } from '../shared/protocol/admin.ts'
import { createSshCertificate, sshPublicKeyLine } from '../shared/ssh-cert.ts'
import { signTrust } from '../shared/trust-statement.ts'
import { createCA, createCertificate } from '../shared/x509.ts'
import { checkedUserCerts } from './checked-user-certs.ts'
import { generateUserKeys, type UserKeys } from './credentials-files.ts'

const ca = createCA('test-cluster user CA', 'test-cluster')
const sshCA = generateKeyPairSync('ed25519').privateKey

/** An answer certifying `tls` and `ssh`, without the signed trust that would follow. */
function answerFor(tls: KeyObject, ssh: KeyObject): UserCerts {
  const now = Date.now()
  const tlsCert = createCertificate({
    subject: { CN: 'dora', O: 'test-cluster', OU: ['user'] },
    issuer: { CN: 'test-cluster user CA', O: 'test-cluster' },
    publicKey: tls,
    signingKey: ca.key,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
  })
  const sshCert = createSshCertificate({
    publicKey: ssh,
    caKey: sshCA,
    type: 'user',
    keyId: 'dora',
    principals: ['dora'],
    validAfter: new Date(now - 60_000),
    validBefore: new Date(now + 3_600_000),
  })
  return {
    ssh_cert: sshCert,
    tls_cert: tlsCert,
    valid_before: now + 3_600_000,
    logins: ['dora'],
    roles: ['access'],
    cluster_name: 'test-cluster',
    host_ca_certs: [],
    proxies: [],
    known_hosts: [],
  }
}

const refusal = /not for the keys this client made/
const own: UserKeys = generateUserKeys()
const other: UserKeys = generateUserKeys()

t.test('certificates for other keys are refused', async (t) => {
  t.throws(() => checkedUserCerts(answerFor(other.tls.publicKey, other.ssh.publicKey), 'test-cluster', [], own), { message: refusal }, 'both swapped')
  t.throws(() => checkedUserCerts(answerFor(own.tls.publicKey, other.ssh.publicKey), 'test-cluster', [], own), { message: refusal }, 'the SSH key swapped')
  t.throws(() => checkedUserCerts(answerFor(other.tls.publicKey, own.ssh.publicKey), 'test-cluster', [], own), { message: refusal }, 'the TLS key swapped')
  t.throws(
    () => checkedUserCerts({ ...answerFor(own.tls.publicKey, own.ssh.publicKey), tls_cert: 'not a certificate' }, 'test-cluster', [], own),
    { message: refusal },
    'no certificate',
  )
})

t.test('certificates for its own keys go on to the trust checks', async (t) => {
  // No signed trust in this answer: the next check refuses it, for that reason.
  t.throws(() => checkedUserCerts(answerFor(own.tls.publicKey, own.ssh.publicKey), 'test-cluster', [], own), { message: /not what the cluster's CA signed/ })
})

t.test('a signed set older than the one the last login took, or not vouched for as current for these keys, is refused', async (t) => {
  const hostCA = createCA('test-cluster host CA', 'test-cluster')
  const userCA = sshPublicKeyLine(generateKeyPairSync('ed25519').publicKey, 'user CA')
  const set = (version: number) => signTrust({ cluster_name: 'test-cluster', version, host_ca_certs: [hostCA.certPem], user_ca_ssh_keys: [userCA] }, [hostCA])
  const ownPublic = { tls: own.tls.publicKey, ssh: own.ssh.publicKey }
  const answer = { ...answerFor(own.tls.publicKey, own.ssh.publicKey), trust: set(5), trust_current: signCurrentTrust('test-cluster', 5, ownPublic, [hostCA]) }
  t.throws(() => checkedUserCerts(answer, 'test-cluster', [hostCA.certPem], own, { trustVersion: 6 }), { message: /not newer than the one held/ }, 'older than the last login took')
  // Past the trust checks, this answer's unsigned host keys are what is refused.
  const past = { message: /host keys in the answer are not signed/ }
  t.throws(() => checkedUserCerts(answer, 'test-cluster', [hostCA.certPem], own, { trustVersion: 5 }), past, 'the same version goes on')
  t.throws(() => checkedUserCerts(answer, 'test-cluster', [hostCA.certPem], own), past, 'so does a first login')
  const notCurrent = { message: /does not show that its CAs are the cluster's current ones/ }
  t.throws(() => checkedUserCerts({ ...answer, trust: set(4) }, 'test-cluster', [hostCA.certPem], own), notCurrent, 'an older set the same CA signed, handed back')
  const otherKeys = { tls: other.tls.publicKey, ssh: other.ssh.publicKey }
  t.throws(
    () => checkedUserCerts({ ...answer, trust_current: signCurrentTrust('test-cluster', 5, otherKeys, [hostCA]) }, 'test-cluster', [hostCA.certPem], own),
    notCurrent,
    'the word given for another request',
  )
  t.throws(() => checkedUserCerts({ ...answer, trust_current: undefined }, 'test-cluster', [hostCA.certPem], own), notCurrent, 'no word that it is current')
  t.throws(
    () => checkedUserCerts({ ...answer, trust_current: undefined }, 'test-cluster', [hostCA.certPem], own, { fromAuthServer: true }),
    past,
    'which the auth server itself need not give',
  )
  const stranger = createCA('another host CA', 'test-cluster')
  t.throws(
    () => checkedUserCerts({ ...answer, trust_current: signCurrentTrust('test-cluster', 5, ownPublic, [stranger]) }, 'test-cluster', [hostCA.certPem], own),
    notCurrent,
    'the word of a CA not trusted',
  )
  t.throws(() => checkedUserCerts({ ...answer, cluster_name: 'other' }, 'test-cluster', [hostCA.certPem], own), { message: /for cluster "other"/ }, 'an answer for another cluster')
})
