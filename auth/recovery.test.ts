// Recovery against a real SQLite registry, real CAs and real joins, with an injected clock:
// a host whose certificate expired gets new certificates for its registered keys by
// signing a challenge, within the recovery window and only with those keys.

import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto'
import { join as joinPath } from 'node:path'
import t, { type Test } from 'tap'
import { issuedByAny } from '../shared/cert-subject.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { generateJoinKeys, identityFromJoin, signedJoinBody } from '../shared/join.ts'
import { joinProofMessage, RECOVERY_PURPOSE, signProof } from '../shared/join-proof.ts'
import { parseBody } from '../shared/protocol/api.ts'
import { recoveryBody } from '../shared/recover.ts'
import { refusal } from '../test/helpers/refusal.ts'
import { Authority, newKeySet } from './authorities.ts'
import { SqliteBackend } from './backend/sqlite.ts'
import { issueHostIdentity } from './issuer.ts'
import { join, parseJoinRequest } from './join.ts'
import { JoinChallenges } from './join-challenge.ts'
import { NodeDirectory } from './nodes.ts'
import { parseRecoveryRequest, Recoveries } from './recovery.ts'
import { Renewals } from './renew.ts'
import { TokenService } from './tokens.ts'

const CLUSTER = 'c1'
const TTL = 30 * 24 * 3_600_000
const WINDOW = 365 * 24 * 3_600_000

async function setup(t: Test, options: { refusedHost?: (hostId: string) => Promise<string | undefined> } = {}) {
  const backend = SqliteBackend.open(joinPath(t.testdir(), 'backend.db'))
  t.teardown(() => backend.close())
  let now = Date.now()
  const clock = () => now
  let hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  const userCA = new Authority({ type: 'user', clusterName: CLUSTER, keySets: [newKeySet('user', CLUSTER)] })
  const tokens = new TokenService(backend, [])
  const nodes = new NodeDirectory(backend, 30_000)
  const challenges = await JoinChallenges.open(backend, clock)
  const renewals = new Renewals({ hostCA: () => hostCA, nodes, clusterName: CLUSTER, hostCertTtlMs: TTL, clock })
  const recoveries = new Recoveries({
    backend,
    nodes,
    renewals,
    challenges,
    clock,
    hostCA: () => hostCA,
    clusterName: CLUSTER,
    recoveryWindowMs: WINDOW,
    ...options,
  })
  const { value: token } = await tokens.add({ roles: ['node'], ttlMs: 3_600_000 })
  /** A device that joined: its identity as the agent stores it. */
  const device = async (nodename = 'pi-1'): Promise<NodeIdentity> => {
    const keys = generateJoinKeys()
    const response = await join(
      { backend, tokens, nodes, challenges, hostCA, userCA, clusterName: CLUSTER, hostCertTtlMs: TTL },
      parseJoinRequest(parseBody('POST /v1/join', signedJoinBody(CLUSTER, challenges.issue().nonce, { token, nodename, roles: ['node'] }, keys)), token),
    )
    return identityFromJoin(response, { tls: keys.tls.privateKey, ssh: keys.ssh.privateKey }, { nodename, roles: ['node'], authServer: 'unused:1', trustedCAs: hostCA.tlsCertPems })
  }
  const recover = (identity: NodeIdentity) => recoveries.recover(parseRecoveryRequest(recoveryBody(identity, challenges.issue().nonce)))
  const rotate = () => {
    hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  }
  return { backend, nodes, renewals, recoveries, challenges, device, recover, rotate, advance: (ms: number) => (now += ms), hostCA: () => hostCA }
}

t.test('a host whose certificate expired recovers it with its registered keys', async (t) => {
  const { nodes, device, recover, advance } = await setup(t)
  const identity = await device()
  advance(TTL + 90 * 24 * 3_600_000) // three months past its expiry
  const recovered = await recover(identity)
  t.equal(recovered.issued, true)
  const cert = new X509Certificate(recovered.tlsCertPem)
  t.ok(cert.publicKey.equals(new X509Certificate(identity.tlsCertPem).publicKey), 'for the same key')
  t.equal(recovered.hostId, identity.hostId, 'the same host')
  t.equal((await nodes.get(identity.hostId))?.certExpires, cert.validToDate.getTime(), 'the registry records the new expiry')
  const again = await recover(identity)
  t.equal(again.issued, false, 'a repeat (the answer was lost) gets the same certificates')
  t.equal(again.tlsCertPem, recovered.tlsCertPem)
})

t.test('a certificate that is still valid renews instead', async (t) => {
  const { device, recover } = await setup(t)
  t.match(await refusal(recover(await device())), { status: 409, message: /is still valid: it renews with it instead/ })
})

t.test('a certificate from a host CA the cluster dropped recovers, even within its dates', async (t) => {
  const { device, recover, rotate, hostCA } = await setup(t)
  const identity = await device()
  rotate()
  const recovered = await recover(identity)
  t.ok(issuedByAny(new X509Certificate(recovered.tlsCertPem), hostCA().tlsCertPems), 'from the CA that signs now')
})

t.test('past the recovery window, the host needs a token made for its name', async (t) => {
  const { device, recover, advance } = await setup(t)
  const identity = await device('pi-7')
  advance(TTL + WINDOW + 1000)
  t.match(await refusal(recover(identity)), {
    status: 410,
    message: /expired on .*, longer ago than the recovery window \(8760 hours\): re-admit it with "warrenctl nodes add --nodename=pi-7"/,
  })
})

t.test('only the registered keys recover, and only a registered host', async (t) => {
  const { nodes, device, recover, advance, challenges, recoveries } = await setup(t)
  const victim = await device('victim')
  const other = await device('other')
  advance(TTL + 1000)
  // The victim's host ID and certificate, signed with other keys.
  const impostor = { ...victim, tlsKeyPem: other.tlsKeyPem, sshKeyPem: other.sshKeyPem }
  t.match(await refusal(recover(impostor)), { status: 403, message: 'field "tls_signature" is not a signature by the TLS key registered for this host' })
  // A certificate naming the victim's host ID for another key.
  const hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  const keys = generateJoinKeys()
  const forged = issueHostIdentity(hostCA, {
    hostId: victim.hostId,
    nodename: 'victim',
    clusterName: CLUSTER,
    roles: ['node'],
    tlsPublicKey: keys.tls.publicKey,
    sshPublicKey: keys.ssh.publicKey,
  })
  const withForged = { ...victim, tlsCertPem: forged.tlsCertPem, tlsKeyPem: keys.tls.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
  t.match(await refusal(recover(withForged)), { status: 403, message: `the certificate's key is not the TLS key registered for host ${victim.hostId}` })
  // The message names the victim's keys, and only the SSH signature is by someone else's key.
  const nonce1 = challenges.issue().nonce
  const signed = recoveryBody(victim, nonce1)
  const message = joinProofMessage({
    purpose: RECOVERY_PURPOSE,
    clusterName: CLUSTER,
    nonce: nonce1,
    tlsPublicKey: new X509Certificate(victim.tlsCertPem).publicKey,
    sshPublicKey: createPublicKey(victim.sshKeyPem),
  })
  const wrongSsh = { ...signed, ssh_signature: signProof(message, createPrivateKey(other.sshKeyPem)) }
  t.match(await refusal(recoveries.recover(parseRecoveryRequest(wrongSsh))), {
    status: 403,
    message: 'field "ssh_signature" is not a signature by the SSH key registered for this host',
  })

  await nodes.remove('victim')
  t.match(await refusal(recover(victim)), {
    status: 403,
    message: `host ${victim.hostId} is not registered in this cluster: it was removed or replaced, and joining again needs a new token`,
  })
  t.equal(await nodes.get(victim.hostId), undefined, 'the removed host stays removed')

  // A challenge is good for one recovery.
  const nonce = challenges.issue().nonce
  await recoveries.recover(parseRecoveryRequest(recoveryBody(other, nonce)))
  t.match(await refusal(recoveries.recover(parseRecoveryRequest(recoveryBody(other, nonce)))), { status: 403, message: /already used/ })
})

t.test('a host barred by refusedHost is refused', async (t) => {
  const { device, recover, advance } = await setup(t, { refusedHost: async () => 'host is locked: stolen' })
  const identity = await device()
  advance(TTL + 1000)
  t.match(await refusal(recover(identity)), { status: 403, message: 'host is locked: stolen' })
})

t.test('malformed requests are 400s naming the field', async (t) => {
  const parse = async (body: unknown) => parseRecoveryRequest(parseBody('POST /v1/recover', body))
  t.match(await refusal(parse({ tls_cert: 'not a certificate', nonce: 'n', tls_signature: 'a', ssh_signature: 'b' })), {
    status: 400,
    message: 'field "tls_cert" must be a PEM certificate',
  })
  t.match(await refusal(parse({ nonce: 'n' })), { status: 400, message: 'missing field "tls_cert"' })
})
