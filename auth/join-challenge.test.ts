import { join } from 'node:path'
import t, { type Test } from 'tap'
import { SqliteBackend } from './backend/sqlite.ts'
import { CHALLENGE_TTL_MS, ChallengeRefusal, ISSUER_CLOCK_AHEAD_MS, JoinChallenges } from './join-challenge.ts'

async function setup(t: Test, file = 'backend.db') {
  let now = 1_000_000
  const backend = SqliteBackend.open(join(t.testdir(), file))
  t.teardown(() => backend.close())
  const challenges = await JoinChallenges.open(backend, () => now)
  return { backend, challenges, advance: (ms: number) => (now += ms) }
}

t.test('a nonce is spent once, by the transaction that registers the join', async (t) => {
  const { backend, challenges } = await setup(t)
  const { nonce } = challenges.issue()
  const spend = challenges.spend(nonce)
  t.ok(await backend.txn(spend.conditions, spend.operations), 'the first join spends it')
  const again = challenges.spend(nonce)
  t.notOk(await backend.txn(again.conditions, again.operations), 'a replay finds it spent and writes nothing')
})

t.test("auth servers sharing a backend accept each other's nonces", async (t) => {
  const { backend, challenges } = await setup(t)
  const other = await JoinChallenges.open(backend, () => 1_000_000)
  t.doesNotThrow(() => other.spend(challenges.issue().nonce))
})

t.test('expired, forged and malformed nonces are refused', async (t) => {
  const { challenges, advance } = await setup(t)
  const { nonce, expires } = challenges.issue()
  t.equal(expires, 1_000_000 + CHALLENGE_TTL_MS)
  const [version, expiry, random, mac] = nonce.split('.')
  t.throws(() => challenges.spend(`${version}.${expiry}.${random}.${mac.slice(0, -2)}AA`), new ChallengeRefusal('the join challenge was not issued by this cluster'))
  // A later expiry with the old MAC: the MAC covers the expiry.
  t.throws(() => challenges.spend(`${version}.${(Number.parseInt(expiry, 36) + 60_000).toString(36)}.${random}.${mac}`), /not issued by this cluster/)
  t.throws(() => challenges.spend('garbage'), /malformed/)
  advance(CHALLENGE_TTL_MS)
  t.throws(() => challenges.spend(nonce), new ChallengeRefusal('the join challenge has expired: ask for a new one'))
})

t.test("a nonce from an auth server whose clock runs ahead is taken within a minute's difference", async (t) => {
  const { backend, challenges } = await setup(t)
  const ahead = await JoinChallenges.open(backend, () => 1_000_000 + 30_000)
  t.doesNotThrow(() => challenges.spend(ahead.issue().nonce), '30 s ahead')
  const far = await JoinChallenges.open(backend, () => 1_000_000 + ISSUER_CLOCK_AHEAD_MS + 1)
  t.throws(() => challenges.spend(far.issue().nonce), /expired/, 'more than a minute ahead')
})

t.test("another cluster's nonce is refused", async (t) => {
  const { challenges } = await setup(t)
  const elsewhere = await setup(t, 'other-cluster.db')
  t.throws(() => challenges.spend(elsewhere.challenges.issue().nonce), /not issued by this cluster/)
})
