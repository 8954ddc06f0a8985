// A join whose answer was lost, repeated with the same keys, on both backends (SQLite, and a
// real etcd when installed): the same host again with certificates for the same keys, and
// nothing more. Another device's keys, a proof it cannot make, another name or roles, a host
// removed or locked since, a token past its original expiry or removed are refused as before.

import { X509Certificate } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join as joinPath } from 'node:path'
import t, { type Test } from 'tap'
import { generateJoinKeys, type JoinFields, type JoinKeys, signedJoinBody } from '../shared/join.ts'
import { joinProofMessage, signProof } from '../shared/join-proof.ts'
import { createLogger } from '../shared/log.ts'
import { parseBody } from '../shared/protocol/api.ts'
import { onEveryBackend } from '../test/helpers/backends.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { Authority, newKeySet } from './authorities.ts'
import type { Backend } from './backend/backend.ts'
import { SqliteBackend } from './backend/sqlite.ts'
import { JoinRefusal, join, parseJoinRequest } from './join.ts'
import { JoinChallenges } from './join-challenge.ts'
import { STATIC_TOKEN_REPEAT_MS } from './join-repeat.ts'
import { publicKeyFingerprint } from './key-policy.ts'
import { Locks } from './locks.ts'
import { NodeDirectory, NodenameTaken, type NodeRecord } from './nodes.ts'
import { Revocations } from './revocations.ts'
import { hashToken, TOKEN_NOT_FOUND, TokenRefusal, TokenService } from './tokens.ts'
import { UserDirectory } from './users.ts'

const CLUSTER = 'c1'
const STATIC_TOKEN = 'a-static-token-0123456789'
const log = createLogger('test', { level: 'error' })
const notFound = new TokenRefusal(TOKEN_NOT_FOUND)

async function cluster(t: Test, open: () => Promise<Backend>) {
  const backend = await open()
  t.teardown(() => backend.close())
  const clock = { now: Date.now() }
  const now = () => clock.now
  const hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  const userCA = new Authority({ type: 'user', clusterName: CLUSTER, keySets: [newKeySet('user', CLUSTER)] })
  const tokens = new TokenService(backend, [{ roles: ['node', 'proxy'], value: STATIC_TOKEN }], now)
  const nodes = new NodeDirectory(backend, 30_000)
  const challenges = await JoinChallenges.open(backend, now)
  const revocations = new Revocations({ backend, recoveryWindowMs: 3600_000, onChange: () => {}, log, clock: now })
  const locks = new Locks({ backend, nodes, users: new UserDirectory(backend), clock: now })
  const context = { backend, tokens, nodes, challenges, hostCA, userCA, clusterName: CLUSTER, clock: now, refusedHost: (hostId: string) => revocations.refusedHost(hostId) }
  /** A join body as the device sends it: signed over a fresh challenge. */
  const body = (token: string, keys: JoinKeys, fields: Partial<JoinFields> = {}) =>
    signedJoinBody(CLUSTER, challenges.issue().nonce, { token, nodename: 'pi-1', roles: ['node'], ...fields }, keys)
  const attempt = (request: unknown) => {
    const parsed = parseBody('POST /v1/join', request)
    return join(context, parseJoinRequest(parsed, parsed.token ?? ''))
  }
  const registry = async () => (await backend.list('/nodes/')).map((item) => JSON.parse(item.value) as NodeRecord)
  const token = async (options: { singleUse?: boolean; roles?: ('node' | 'proxy')[]; ttlMs?: number; nodename?: string } = {}) =>
    (await tokens.add({ roles: options.roles ?? ['node'], ttlMs: options.ttlMs ?? 3_600_000, singleUse: options.singleUse ?? true, nodename: options.nodename })).value
  return { backend, clock, challenges, tokens, nodes, locks, revocations, body, attempt, registry, token }
}

function suite(name: string, open: () => Promise<Backend>): void {
  t.test(`${name}: a single-use token spent by a join whose answer was lost joins the same keys again as the same host`, async (t) => {
    const c = await cluster(t, open)
    const token = await c.token()
    const keys = generateJoinKeys()
    const first = await c.attempt(c.body(token, keys))
    t.notOk(first.repeated, 'the first join is no repeat')
    // Its answer never reached the device, which asks again with the same keys and a new challenge.
    c.clock.now += 60_000
    const again = await c.attempt(c.body(token, keys))
    t.equal(again.host_id, first.host_id, 'the same host ID')
    t.equal(again.repeated, true)
    const cert = new X509Certificate(again.tls_cert)
    t.equal(publicKeyFingerprint(cert.publicKey), publicKeyFingerprint(keys.tls.publicKey), 'a certificate for the same TLS key')
    t.not(cert.serialNumber, new X509Certificate(first.tls_cert).serialNumber, 'issued anew')
    t.match(again.ssh_cert, /^ssh-ed25519-cert-v01@openssh.com /)
    t.same(again.host_ca_certs, first.host_ca_certs)
    t.same(again.trust, first.trust)
    const records = await c.registry()
    t.same(
      records.map((r) => [r.hostId, r.nodename]),
      [[first.host_id, 'pi-1']],
      'one host registered',
    )
    t.equal(records[0].certExpires, cert.validToDate.getTime(), "the registry has the new certificates' expiry")
    t.equal(await c.backend.get(`/tokens/${hashToken(token).toString('hex')}`), undefined, 'the token stays spent')
    t.same(JSON.parse((await c.backend.get('/nodenames/pi-1'))!.value), { hostId: first.host_id })
  })

  t.test(`${name}: only the exact repeat: other keys, a proof it cannot make, a replay, another name or roles are refused`, async (t) => {
    const c = await cluster(t, open)
    const token = await c.token({ roles: ['node', 'proxy'] })
    const keys = generateJoinKeys()
    const first = await c.attempt(c.body(token, keys))

    await t.rejects(c.attempt(c.body(token, generateJoinKeys())), notFound, 'another device with the same token and its own keys')
    const mine = generateJoinKeys()
    const stolenKeys = { ...c.body(token, mine), tls_public_key: c.body(token, keys).tls_public_key, ssh_public_key: c.body(token, keys).ssh_public_key }
    await t.rejects(c.attempt(stolenKeys), /field "tls_signature" is not a signature by the key in "tls_public_key"/, 'the public keys, signed by other keys')
    // The TLS key held, the SSH key not: its signature made by another key.
    const nonce = c.challenges.issue().nonce
    const message = joinProofMessage({ clusterName: CLUSTER, nonce, tlsPublicKey: keys.tls.publicKey, sshPublicKey: keys.ssh.publicKey })
    const halfHeld = { ...signedJoinBody(CLUSTER, nonce, { token, nodename: 'pi-1', roles: ['node'] }, keys), ssh_signature: signProof(message, mine.ssh.privateKey) }
    await t.rejects(c.attempt(halfHeld), /field "ssh_signature" is not a signature by the key in "ssh_public_key"/, 'the TLS key held, the SSH key not')
    await t.rejects(c.attempt(c.body(token, { tls: keys.tls, ssh: mine.ssh })), notFound, 'the TLS key with another SSH key')
    await t.rejects(c.attempt(c.body(token, keys, { nodename: 'pi-2' })), notFound, 'another name')
    await t.rejects(c.attempt(c.body(token, keys, { roles: ['node', 'proxy'] })), notFound, 'other roles')
    const lost = c.body(token, keys)
    t.equal((await c.attempt(lost)).host_id, first.host_id)
    await t.rejects(c.attempt(lost), new JoinRefusal('the join challenge was already used: ask for a new one'), 'a repeat sent again as it was')
    t.same(
      (await c.registry()).map((r) => r.hostId),
      [first.host_id],
      'nothing else registered',
    )
  })

  t.test(`${name}: a multi-use token: the same keys get the same host, other keys a new one (or the name is taken)`, async (t) => {
    const c = await cluster(t, open)
    const token = await c.token({ singleUse: false, roles: ['node', 'proxy'] })
    const keys = generateJoinKeys()
    const first = await c.attempt(c.body(token, keys))
    const again = await c.attempt(c.body(token, keys))
    t.equal(again.host_id, first.host_id, 'the same keys: the same host, not a name taken')
    t.equal(again.repeated, true)
    await t.rejects(c.attempt(c.body(token, generateJoinKeys())), new NodenameTaken('pi-1'), 'other keys under the same name: taken, as before')
    const other = await c.attempt(c.body(token, generateJoinKeys(), { nodename: 'pi-2' }))
    t.not(other.host_id, first.host_id, 'under another name: a new host, as before')

    // Proxies claim no name: without the receipt, a repeat would register a second host.
    const proxyKeys = generateJoinKeys()
    const proxy = await c.attempt(c.body(token, proxyKeys, { roles: ['proxy'], nodename: 'edge' }))
    t.equal((await c.attempt(c.body(token, proxyKeys, { roles: ['proxy'], nodename: 'edge' }))).host_id, proxy.host_id)
    const proxies = (await c.registry()).filter((r) => r.roles.includes('proxy'))
    t.equal(proxies.length, 1, 'one proxy registered')

    t.ok(await c.tokens.remove(token))
    await t.rejects(c.attempt(c.body(token, keys)), notFound, 'a token removed admits no repeat')
    t.equal((await c.registry()).length, 3)
  })

  t.test(`${name}: bounds: the token's original expiry, a host removed or locked since`, async (t) => {
    const c = await cluster(t, open)
    const expiring = await c.token({ ttlMs: 600_000 })
    const keys = generateJoinKeys()
    const first = await c.attempt(c.body(expiring, keys))
    c.clock.now += 599_000
    t.equal((await c.attempt(c.body(expiring, keys))).host_id, first.host_id, 'a second before the token would have expired')
    c.clock.now += 1000
    await t.rejects(c.attempt(c.body(expiring, keys)), notFound, 'from its expiry on, refused')

    const locked = await c.token({ nodename: 'pi-locked' })
    const lockedKeys = generateJoinKeys()
    const host = await c.attempt(c.body(locked, lockedKeys, { nodename: 'pi-locked' }))
    const lock = await c.locks.add({ node: 'pi-locked', message: 'stolen' })
    await c.revocations.refresh()
    await t.rejects(c.attempt(c.body(locked, lockedKeys, { nodename: 'pi-locked' })), notFound, 'a locked host: refused')
    await c.locks.remove(lock.id)
    await c.revocations.refresh()
    t.equal((await c.attempt(c.body(locked, lockedKeys, { nodename: 'pi-locked' }))).host_id, host.host_id, 'once the lock is gone, as a renewal would be')

    const removed = await c.token()
    const removedKeys = generateJoinKeys()
    await c.attempt(c.body(removed, removedKeys, { nodename: 'pi-removed' }))
    await c.nodes.remove('pi-removed')
    await t.rejects(c.attempt(c.body(removed, removedKeys, { nodename: 'pi-removed' })), notFound, 'a removed host: refused')
    t.same((await c.registry()).map((r) => r.nodename).sort(), ['pi-1', 'pi-locked'], 'and nothing registered')
  })

  t.test(`${name}: a token made for a name: the repeat is the replacement, which replaces nothing more`, async (t) => {
    const c = await cluster(t, open)
    const old = await c.attempt(c.body(await c.token(), generateJoinKeys()))
    const bound = await c.token({ nodename: 'pi-1' })
    const keys = generateJoinKeys()
    const replacement = await c.attempt(c.body(bound, keys))
    t.equal(replacement.replaced, old.host_id)
    const again = await c.attempt(c.body(bound, keys))
    t.equal(again.host_id, replacement.host_id)
    t.equal(again.replaced, undefined)
    t.same(
      (await c.registry()).map((r) => r.hostId),
      [replacement.host_id],
    )
  })

  t.test(`${name}: a retry racing the first try: both are answered with one host`, async (t) => {
    const c = await cluster(t, open)
    for (let round = 0; round < 5; round++) {
      const token = await c.token()
      const keys = generateJoinKeys()
      const answers = await Promise.all([c.attempt(c.body(token, keys, { nodename: `race-${round}` })), c.attempt(c.body(token, keys, { nodename: `race-${round}` }))])
      t.equal(answers[0].host_id, answers[1].host_id, `round ${round}: the same host`)
      t.equal(answers.filter((answer) => answer.repeated).length, 1, `round ${round}: one registered it, the other repeated it`)
    }
    t.equal((await c.registry()).length, 5)
  })

  t.test(`${name}: a static token repeats for an hour; receipts keep no token`, async (t) => {
    const c = await cluster(t, open)
    const keys = generateJoinKeys()
    const first = await c.attempt(c.body(STATIC_TOKEN, keys))
    const [receipt] = await c.backend.list('/join-receipts/')
    t.equal(
      receipt.key,
      `/join-receipts/${hashToken(STATIC_TOKEN).toString('hex')}/${publicKeyFingerprint(keys.tls.publicKey)}`,
      "keyed by the token's hash and the key's fingerprint",
    )
    t.notMatch(receipt.value, STATIC_TOKEN)
    t.ok(receipt.expires !== undefined && receipt.expires <= Date.now() + STATIC_TOKEN_REPEAT_MS, 'gone within the hour')
    t.equal((await c.attempt(c.body(STATIC_TOKEN, keys))).host_id, first.host_id)
    c.clock.now += STATIC_TOKEN_REPEAT_MS
    await t.rejects(c.attempt(c.body(STATIC_TOKEN, keys)), new NodenameTaken('pi-1'), 'an hour later, the name is taken as before')
  })
}

onEveryBackend('join-repeat', suite)

t.test('SQLite: the backend files hold no token, only its hash', async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(joinPath(dir, 'backend.db'))
  const tokens = new TokenService(backend, [])
  const challenges = await JoinChallenges.open(backend)
  const hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  const userCA = new Authority({ type: 'user', clusterName: CLUSTER, keySets: [newKeySet('user', CLUSTER)] })
  const context = { backend, tokens, nodes: new NodeDirectory(backend, 30_000), challenges, hostCA, userCA, clusterName: CLUSTER }
  const { value } = await tokens.add({ roles: ['node'], ttlMs: 60_000, singleUse: true })
  const keys = generateJoinKeys()
  for (let i = 0; i < 2; i++) {
    const parsed = parseBody('POST /v1/join', signedJoinBody(CLUSTER, challenges.issue().nonce, { token: value, nodename: 'pi-1', roles: ['node'] }, keys))
    await join(context, parseJoinRequest(parsed, value))
  }
  await backend.close()
  const bytes = readdirSync(dir)
    .map((f) => readFileSync(joinPath(dir, f)).toString('latin1'))
    .join('')
  t.notOk(bytes.includes(value), 'the token value is nowhere in the database files')
})
