// The join's rules against a real SQLite backend and real CAs: the server's host IDs, proof
// of possession, refused fields and key types, unique node names, tokens made for a name.

import { createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { join as joinPath } from 'node:path'
import t, { type Test } from 'tap'
import { generateJoinKeys, type JoinFields, type JoinKeys, signedJoinBody } from '../shared/join.ts'
import { parseBody } from '../shared/protocol/api.ts'
import { ProtocolError } from '../shared/protocol/errors.ts'
import { Authority, newKeySet } from './authorities.ts'
import { SqliteBackend } from './backend/sqlite.ts'
import { JoinRefusal, join, parseJoinRequest } from './join.ts'
import { JoinChallenges } from './join-challenge.ts'
import { publicKeyFingerprint } from './key-policy.ts'
import { NodeDirectory, NodenameTaken, type NodeRecord } from './nodes.ts'
import { TokenService } from './tokens.ts'

const CLUSTER = 'c1'

/** A join body as the router reads it (its shape), then as the join reads it. */
const parseJoin = (body: unknown) => {
  const parsed = parseBody('POST /v1/join', body)
  return parseJoinRequest(parsed, parsed.token ?? '')
}

async function cluster(t: Test) {
  const backend = SqliteBackend.open(joinPath(t.testdir(), 'backend.db'))
  t.teardown(() => backend.close())
  const hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  const userCA = new Authority({ type: 'user', clusterName: CLUSTER, keySets: [newKeySet('user', CLUSTER)] })
  const tokens = new TokenService(backend, [])
  const nodes = new NodeDirectory(backend, 30_000)
  const challenges = await JoinChallenges.open(backend)
  const context = { backend, tokens, nodes, challenges, hostCA, userCA, clusterName: CLUSTER }
  const { value: token } = await tokens.add({ roles: ['node'], ttlMs: 3_600_000 })
  const body = (fields: Partial<JoinFields> = {}, keys: JoinKeys = generateJoinKeys()) =>
    signedJoinBody(CLUSTER, challenges.issue().nonce, { token, nodename: 'pi-1', roles: ['node'], ...fields }, keys)
  const attempt = (request: unknown) => join(context, parseJoin(request))
  const registry = async () => (await backend.list('/nodes/')).map((item) => JSON.parse(item.value) as NodeRecord)
  return { backend, hostCA, tokens, nodes, challenges, body, attempt, registry }
}

t.test('the server chooses every host ID; a request that names one is refused', async (t) => {
  const { body, attempt, registry } = await cluster(t)
  const a = await attempt(body({ nodename: 'a' }))
  const b = await attempt(body({ nodename: 'b' }))
  t.match(a.host_id, /^[0-9a-f-]{36}$/)
  t.not(a.host_id, b.host_id)
  t.equal(
    new X509Certificate(a.tls_cert).subject.split('\n').find((line) => line.startsWith('CN=')),
    `CN=${a.host_id}`,
  )
  t.throws(
    () => parseJoin({ ...body({ nodename: 'c' }), host_id: a.host_id }),
    new ProtocolError(
      'POST /v1/join',
      'host_id',
      'field "host_id" is not accepted: the auth server assigns host IDs; a host that has one renews with its certificate instead of joining',
    ),
  )
  t.throws(() => parseJoin({ ...body({ nodename: 'c' }), addresses: ['10.0.0.1'] }), /field "addresses" is not accepted/)
  t.equal((await registry()).length, 2)
})

t.test("the registry keeps the TLS key's fingerprint and the SSH key; the certificates name only the host", async (t) => {
  const { body, attempt, registry } = await cluster(t)
  const keys = generateJoinKeys()
  const joined = await attempt(body({}, keys))
  const [record] = await registry()
  t.equal(record.tlsKeySha256, publicKeyFingerprint(keys.tls.publicKey))
  t.equal(new X509Certificate(joined.tls_cert).subjectAltName, `DNS:${joined.host_id}, DNS:pi-1`)
})

t.test('a join must prove it holds the keys it asks to certify', async (t) => {
  const { hostCA, body, attempt, registry } = await cluster(t)
  // The host CA's own public key, "signed" by a key the caller does hold.
  const caKey = new X509Certificate(hostCA.tlsCertPems[0]).publicKey
  const mine = generateJoinKeys()
  const forged = { ...body({}, mine), tls_public_key: caKey.export({ type: 'spki', format: 'pem' }) }
  await t.rejects(attempt(forged), /field "tls_signature" is not a signature by the key in "tls_public_key"/)
  const ssh = { ...body({}, mine), ssh_signature: body().ssh_signature }
  await t.rejects(attempt(ssh), /field "ssh_signature" is not a signature by the key in "ssh_public_key"/)
  const signedForAnotherNonce = { ...body({}, mine), nonce: body().nonce }
  await t.rejects(attempt(signedForAnotherNonce), /tls_signature/)
  t.same(await registry(), [], 'nothing registered')
})

t.test('a nonce is good for one join', async (t) => {
  const { body, attempt, registry } = await cluster(t)
  const request = body()
  await attempt(request)
  await t.rejects(attempt(request), new JoinRefusal('the join challenge was already used: ask for a new one'), 'replayed as it was')
  await t.rejects(attempt({ ...request, nodename: 'pi-2' }), /already used/, 'or under another name')
  t.equal((await registry()).length, 1)
})

t.test('key types are refused by name', async (t) => {
  const { body } = await cluster(t)
  const ssh = generateKeyPairSync('ed25519')
  for (const curve of ['secp256k1', 'P-521']) {
    const keys = { tls: generateKeyPairSync('ec', { namedCurve: curve }), ssh }
    t.throws(() => parseJoin(body({}, keys)), /field "tls_public_key": "(secp256k1|P-521)" keys are not accepted: use Ed25519, ECDSA P-256 or P-384/)
  }
  t.throws(() => parseJoin({ ...body(), ssh_public_key: 'ecdsa-sha2-nistp256 AAAA' }), /field "ssh_public_key" must be an ssh-ed25519 public key line/)
})

t.test('a sign-up token makes no host: the signup role is no role to join with', async (t) => {
  const { body } = await cluster(t)
  t.throws(() => parseJoin(body({ roles: ['signup'] })), /no host joins with role "signup"/)
  t.throws(() => parseJoin(body({ roles: ['node', 'signup'] })), /no host joins with role "signup"/)
})

t.test('node names: unique, not reserved, not shaped like a host ID', async (t) => {
  const { body, attempt, registry } = await cluster(t)
  const first = await attempt(body())
  await t.rejects(attempt(body()), new NodenameTaken('pi-1'))
  await t.rejects(attempt(body({ nodename: 'PI-1' })), /nodename "PI-1" is already registered/, 'case does not make another name')
  t.throws(() => parseJoin(body({ nodename: 'localhost' })), /reserved name/)
  t.throws(() => parseJoin(body({ nodename: first.host_id })), /must not look like a host ID/)
  t.same(
    (await registry()).map((r) => r.hostId),
    [first.host_id],
  )
})

t.test('only nodes claim their name: users reach nodes by name, not proxies', async (t) => {
  const { tokens, body, attempt } = await cluster(t)
  const { value: proxyToken } = await tokens.add({ roles: ['proxy'], ttlMs: 60_000 })
  const a = await attempt(body({ token: proxyToken, roles: ['proxy'], nodename: 'proxy' }))
  const b = await attempt(body({ token: proxyToken, roles: ['proxy'], nodename: 'proxy' }))
  t.not(a.host_id, b.host_id, 'two proxies may share a name')
})

t.test('a token made for a name joins only that name, and replaces its holder in the same transaction', async (t) => {
  const { backend, tokens, body, attempt, registry } = await cluster(t)
  const old = await attempt(body())
  await backend.put(`/presence/${old.host_id}`, '{}')
  const { value: bound, record } = await tokens.add({ roles: ['node'], ttlMs: 60_000, nodename: 'pi-1' })
  t.equal(record.singleUse, true, 'a token for a name is single-use')
  await t.rejects(attempt(body({ token: bound, nodename: 'pi-2' })), /the token is for node "pi-1"/)
  const replacement = await attempt(body({ token: bound }))
  t.equal(replacement.replaced, old.host_id)
  t.same(
    (await registry()).map((r) => r.hostId),
    [replacement.host_id],
    "the old host's record is gone",
  )
  t.equal(await backend.get(`/presence/${old.host_id}`), undefined, 'and its presence')
  t.same(JSON.parse((await backend.get('/nodenames/pi-1'))!.value), { hostId: replacement.host_id })
  await t.rejects(attempt(body({ token: bound })), /token expired or not found/, 'used once')
})

t.test('nodes rm: by name or host ID, record, name and presence in one go', async (t) => {
  const { backend, nodes, body, attempt, registry } = await cluster(t)
  const a = await attempt(body({ nodename: 'a' }))
  const b = await attempt(body({ nodename: 'b' }))
  await backend.put(`/presence/${a.host_id}`, '{}')
  t.equal((await nodes.remove('a')).hostId, a.host_id)
  t.equal((await nodes.remove(b.host_id)).nodename, 'b')
  t.same(await registry(), [])
  t.same(await backend.list('/nodenames/'), [])
  t.same(await backend.list('/presence/'), [])
  await t.rejects(nodes.remove('a'), /no node "a" is registered/)
  t.ok(await attempt(body({ nodename: 'a' })), 'the name is free again')
})

t.test("public addresses: a proxy's certificates name them, a node may not ask", async (t) => {
  const { tokens, body, attempt } = await cluster(t)
  const { value: proxyToken } = await tokens.add({ roles: ['proxy'], ttlMs: 60_000 })
  t.throws(() => parseJoin(body({ publicAddrs: ['proxy.example.com'] })), /field "public_addrs" is only for proxies/)
  const proxy = await attempt(body({ token: proxyToken, roles: ['proxy'], nodename: 'edge', publicAddrs: ['proxy.example.com', 'localhost'] }))
  t.equal(new X509Certificate(proxy.tls_cert).subjectAltName, `DNS:${proxy.host_id}, DNS:edge, DNS:proxy.example.com`)
  t.ok(createPublicKey(proxy.tls_cert))
})
