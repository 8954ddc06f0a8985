// The identity a join's answer gives, which may have come through a proxy: taken only when
// the signed set comes from the pinned CA, the TLS certificate from a CA of that set for the
// device's key and the host ID given, and the SSH certificate a host certificate for the
// device's SSH key, naming what the TLS certificate names, in its dates and whole.

import { generateKeyPairSync, type KeyObject, randomUUID, X509Certificate } from 'node:crypto'
import t from 'tap'
import { Authority, newKeySet } from '../auth/authorities.ts'
import { issueHostIdentity } from '../auth/issuer.ts'
import { trustStatement } from '../auth/trust.ts'
import { WarrenError } from './errors.ts'
import { generateJoinKeys, identityFromJoin } from './join.ts'
import type { Joined } from './protocol/hosts.ts'
import { createSshCertificate, parseSshCertificate } from './ssh-cert.ts'

const hostCA = new Authority({ type: 'host', clusterName: 'c1', keySets: [newKeySet('host', 'c1')] })
const userCA = new Authority({ type: 'user', clusterName: 'c1', keySets: [newKeySet('user', 'c1')] })
const stranger = new Authority({ type: 'host', clusterName: 'c1', keySets: [newKeySet('host', 'c1')] })
const request = { nodename: 'pi-1', roles: ['node'], authServer: 'proxy.example.com:443', trustedCAs: hostCA.tlsCertPems }

/** A join's answer as the auth server gives it, to a device with fresh keys, its certificates changed when asked. */
function joined(change: { tls?: string; ssh?: (issued: { tlsCert: X509Certificate; sshCert: string; sshKey: KeyObject; hostId: string }) => string } = {}) {
  const keys = generateJoinKeys()
  const hostId = randomUUID()
  const issued = issueHostIdentity(hostCA, { hostId, nodename: 'pi-1', clusterName: 'c1', roles: ['node'], tlsPublicKey: keys.tls.publicKey, sshPublicKey: keys.ssh.publicKey })
  const response: Joined = {
    host_id: hostId,
    cluster_name: 'c1',
    tls_cert: change.tls ?? issued.tlsCertPem,
    ssh_cert: change.ssh ? change.ssh({ tlsCert: new X509Certificate(issued.tlsCertPem), sshCert: issued.sshCert, sshKey: keys.ssh.publicKey, hostId }) : issued.sshCert,
    host_ca_certs: hostCA.tlsCertPems,
    user_ca_ssh_keys: userCA.sshPublicKeys,
    trust: trustStatement('c1', hostCA, userCA),
  }
  return { response, keys: { tls: keys.tls.privateKey, ssh: keys.ssh.privateKey }, publicKeys: keys }
}

t.test('the answer as the auth server gives it makes the identity', async (t) => {
  const { response, keys } = joined()
  const identity = identityFromJoin(response, keys, request)
  t.equal(identity.hostId, response.host_id)
  t.equal(identity.sshCert, response.ssh_cert)
  t.equal(identity.tlsCertPem, response.tls_cert)
  t.same(identity.hostCASshKeys, hostCA.sshPublicKeys, 'with the host CA’s SSH key, from the signed set')
})

t.test('certificates a proxy on the way could swap in are refused', async (t) => {
  const attackerCA = generateKeyPairSync('ed25519').privateKey
  const forge = (issued: { tlsCert: X509Certificate; sshCert: string; sshKey: KeyObject; hostId: string }, change: Partial<Parameters<typeof createSshCertificate>[0]>) =>
    createSshCertificate({
      publicKey: issued.sshKey,
      caKey: attackerCA,
      type: 'host',
      keyId: issued.hostId,
      principals: parseSshCertificate(issued.sshCert).principals,
      validAfter: issued.tlsCert.validFromDate,
      validBefore: issued.tlsCert.validToDate,
      ...change,
    })
  const other = joined()
  const cases: [string, ReturnType<typeof joined>][] = [
    [
      'a TLS certificate from a CA outside the signed set',
      joined({
        tls: issueHostIdentity(stranger, {
          hostId: randomUUID(),
          nodename: 'pi-1',
          clusterName: 'c1',
          roles: ['node'],
          tlsPublicKey: other.publicKeys.tls.publicKey,
          sshPublicKey: other.publicKeys.ssh.publicKey,
        }).tlsCertPem,
      }),
    ],
    ["another device's TLS certificate", joined({ tls: other.response.tls_cert })],
    ["another device's SSH certificate", joined({ ssh: () => other.response.ssh_cert })],
    ['an SSH certificate with a principal more', joined({ ssh: (issued) => forge(issued, { principals: [...parseSshCertificate(issued.sshCert).principals, 'db-1'] }) })],
    ['an SSH user certificate', joined({ ssh: (issued) => forge(issued, { type: 'user' }) })],
    ['an SSH certificate that outlives the TLS one', joined({ ssh: (issued) => forge(issued, { validBefore: new Date(issued.tlsCert.validToDate.getTime() + 86_400_000) }) })],
    ['an expired SSH certificate', joined({ ssh: (issued) => forge(issued, { validBefore: new Date(Date.now() - 1000) }) })],
    [
      'an SSH certificate whose signature does not verify',
      joined({
        ssh: (issued) => {
          const [type, base64] = issued.sshCert.split(' ')
          const blob = Buffer.from(base64!, 'base64')
          blob[blob.length - 1]! ^= 1
          return `${type} ${blob.toString('base64')}`
        },
      }),
    ],
    ['garbage', joined({ ssh: () => 'ssh-ed25519-cert-v01@openssh.com AAAA' })],
    // Before the set named the host CA's SSH key, a join took the key the certificate named.
    ['an SSH certificate from a key of its own, every field as issued', joined({ ssh: (issued) => forge(issued, {}) })],
  ]
  for (const [what, { response, keys }] of cases) {
    let refused: unknown
    try {
      identityFromJoin(response, keys, request)
    } catch (error) {
      refused = error
    }
    t.ok(refused instanceof WarrenError, `${what}: refused${refused ? ` (${(refused as Error).message})` : ''}`)
  }
})

t.test('from an auth server whose set names no SSH keys, the SSH certificate is taken under the key it names', async (t) => {
  const { response, keys } = joined()
  const { host_ca_ssh_keys: _, signatures_v2: __, ...earlier } = response.trust!
  const identity = identityFromJoin({ ...response, trust: { ...earlier, host_ca_ssh_keys: undefined, signatures_v2: undefined } }, keys, request)
  t.equal(identity.sshCert, response.ssh_cert)
  t.equal(identity.hostCASshKeys, undefined, 'and no host CA SSH keys are held')
})
