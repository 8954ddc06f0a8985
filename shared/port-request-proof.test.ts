// The node's memory of signed port requests: one user cannot use up the room of the others,
// a request's nonce is forgotten once the request could no longer be taken anyway, and a
// full memory makes room for new requests, at the expense of the users holding the most,
// without ever taking one twice.

import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { MAX_NONCES_PER_USER, PortProofs, PROOF_WINDOW_MS, signPortRequest } from './port-request-proof.ts'

const fields = { cluster: 'c1', node: 'pi-1', port: 'webui' }
const alice = generateKeyPairSync('ed25519')
const bob = generateKeyPairSync('ed25519')

t.test("one user's requests fill only that user's room, which empties as the window passes", async (t) => {
  let now = 1_000_000
  const proofs = new PortProofs(() => now)
  const take = (key: typeof alice, user: string) => proofs.refusal(signPortRequest(key.privateKey, fields, now), 'c1', ['pi-1'], 'webui', key.publicKey, user)
  for (let i = 0; i < MAX_NONCES_PER_USER; i++) {
    const refused = take(alice, 'alice')
    if (refused) t.fail(`request ${i} refused: ${refused}`)
  }
  t.match(take(alice, 'alice'), /too many forwarded-port requests/, "alice's room is full")
  t.equal(take(bob, 'bob'), undefined, "bob's requests are still taken")
  now += PROOF_WINDOW_MS + 1
  t.equal(take(alice, 'alice'), undefined, 'once the window has passed, alice is taken again')
})

t.test('a request is taken once', async (t) => {
  const proofs = new PortProofs(() => 5_000)
  const proof = signPortRequest(alice.privateKey, fields, 5_000)
  t.equal(proofs.refusal(proof, 'c1', ['pi-1'], 'webui', alice.publicKey, 'alice'), undefined)
  t.match(proofs.refusal(proof, 'c1', ['pi-1'], 'webui', alice.publicKey, 'alice'), /used before/)
})

t.test("a full memory forgets the oldest nonce of the user holding the most, and refuses that user's requests signed no later than it", async (t) => {
  let now = 2_000_000
  const proofs = new PortProofs(() => now, { total: 4, perUser: 2 })
  const users = { alice, bob, carol: generateKeyPairSync('ed25519') }
  const sign = (user: keyof typeof users, at = now++) => ({ user, proof: signPortRequest(users[user].privateKey, fields, at) })
  const take = ({ user, proof }: ReturnType<typeof sign>) => proofs.refusal(proof, 'c1', ['pi-1'], 'webui', users[user].publicKey, user)
  const first = [sign('alice'), sign('alice'), sign('bob'), sign('bob')]
  for (const request of first) t.equal(take(request), undefined)
  t.equal(take(sign('carol')), undefined, 'carol is taken although the memory was full')
  t.match(take(first[0]!), /no later than requests this node forgot/, 'the forgotten request is still refused if sent again')
  t.match(take(first[1]!), /used before/, 'the next oldest is still remembered')
  t.equal(take(sign('alice')), undefined, "alice's forgotten request no longer counts against her")
  t.match(take(first[2]!), /no later than requests this node forgot/, 'and bob, now holding the most, made room in turn')
  t.match(take(first[1]!), /used before/, "alice's other request is still remembered")
  t.equal(take(sign('carol', first[0]!.proof.at)), undefined, "the floor is alice's alone: carol's request signed as early is taken")
})

t.test('a memory full of users holding one nonce each refuses new requests, as no floor could be kept for them', async (t) => {
  const now = 3_000_000
  const proofs = new PortProofs(() => now, { total: 2, perUser: 1 })
  const ahead = (key: typeof alice, user: string) => proofs.refusal(signPortRequest(key.privateKey, fields, now + 60_000), 'c1', ['pi-1'], 'webui', key.publicKey, user)
  t.equal(ahead(alice, 'alice'), undefined)
  t.equal(ahead(bob, 'bob'), undefined)
  const carol = generateKeyPairSync('ed25519')
  t.match(proofs.refusal(signPortRequest(carol.privateKey, fields, now), 'c1', ['pi-1'], 'webui', carol.publicKey, 'carol'), /too many forwarded-port requests in the last minutes/)
})

t.test('users flooding together, one with requests dated ahead, cannot lock the others out', async (t) => {
  let now = 4_000_000
  const proofs = new PortProofs(() => now)
  const keys = new Map<string, typeof alice>()
  const keyOf = (user: string) => keys.get(user) ?? keys.set(user, generateKeyPairSync('ed25519')).get(user)!
  const sign = (user: string, at = now) => ({ user, proof: signPortRequest(keyOf(user).privateKey, fields, at) })
  const take = ({ user, proof }: ReturnType<typeof sign>) => proofs.refusal(proof, 'c1', ['pi-1'], 'webui', keyOf(user).publicKey, user)

  // Dated 4.9 minutes ahead and taken first: the oldest seen, and the last to expire.
  const ahead = Array.from({ length: 64 }, () => sign('mallory', now + PROOF_WINDOW_MS - 6_000))
  t.same(ahead.map(take).filter(Boolean), [], 'all taken, within the window')
  const flooders = Array.from({ length: 10 }, (_, i) => `flooder-${i}`)
  const flood = new Map(flooders.map((user) => [user, Array.from({ length: MAX_NONCES_PER_USER }, () => sign(user))]))
  for (const requests of flood.values()) for (const request of requests) take(request)

  for (let i = 0; i < 20; i++) {
    now += 1_000
    t.equal(take(sign(`user-${i}`)), undefined, `a fresh request of user-${i} is taken, ${i} s into the full memory`)
    for (const flooder of flooders) take(sign(flooder))
    take(sign('mallory', now + PROOF_WINDOW_MS - 6_000))
  }
  const carol = sign('carol')
  t.equal(take(carol), undefined, 'carol is taken too')
  t.match(take(carol), /used before/, "and carol's request only once")

  // A flooder's forgotten nonces are their oldest: replay each flooder's first few, and all of mallory's.
  const replays = [...ahead, ...[...flood.values()].flatMap((requests) => requests.slice(0, 100))]
  const refusals = replays.map(take)
  t.equal(refusals.filter((refusal) => refusal === undefined).length, 0, 'no replay is taken')
  t.ok(
    refusals.some((refusal) => /no later than requests this node forgot/.test(refusal!)),
    'among them requests the node forgot to make room, refused by their user’s floor',
  )
})

/**
 * The same rules, written plainly (every nonce scanned on each request), to check the real
 * memory's orders against. Among users holding the most, the one that came to hold that many
 * first makes room.
 */
class PlainMemory {
  private readonly users = new Map<string, { nonces: Map<string, number>; floor: number; since: number }>()
  private changes = 0
  private readonly limits: { total: number; perUser: number }

  constructor(limits: { total: number; perUser: number }) {
    this.limits = limits
  }

  refusal(user: string, nonce: string, at: number, now: number): string | undefined {
    const expired = [...this.users].flatMap(([name, { nonces }]) => [...nonces].filter(([, at]) => at + PROOF_WINDOW_MS < now).map(([nonce, at]) => ({ name, nonce, at })))
    for (const { name, nonce } of expired.sort((a, b) => a.at - b.at)) this.drop(name, nonce)
    if (Math.abs(now - at) > PROOF_WINDOW_MS) return 'window'
    const holder = this.users.get(user)
    if (holder !== undefined && at <= holder.floor) return 'forgot'
    if (holder?.nonces.has(nonce)) return 'used'
    if ((holder?.nonces.size ?? 0) >= this.limits.perUser) return 'user full'
    const total = [...this.users.values()].reduce((sum, { nonces }) => sum + nonces.size, 0)
    if (total >= this.limits.total) {
      const [name, most] = [...this.users].reduce((a, b) => (b[1].nonces.size > a[1].nonces.size || (b[1].nonces.size === a[1].nonces.size && b[1].since < a[1].since) ? b : a))
      if (most.nonces.size < 2) return 'full'
      const [oldest, oldestAt] = [...most.nonces].reduce((a, b) => (b[1] < a[1] ? b : a))
      this.drop(name, oldest)
      most.floor = Math.max(most.floor, oldestAt)
    }
    const remembered = this.users.get(user) ?? this.users.set(user, { nonces: new Map(), floor: Number.NEGATIVE_INFINITY, since: 0 }).get(user)!
    remembered.nonces.set(nonce, at)
    remembered.since = ++this.changes
    return undefined
  }

  private drop(user: string, nonce: string): void {
    const holder = this.users.get(user)!
    holder.nonces.delete(nonce)
    holder.since = ++this.changes
    if (holder.nonces.size === 0) this.users.delete(user)
  }
}

t.test('in any order of requests, dated anywhere in the window, the memory follows the plain rules and takes none twice', async (t) => {
  let now = 5_000_000
  const limits = { total: 24, perUser: 8 }
  const proofs = new PortProofs(() => now, limits)
  const plain = new PlainMemory(limits)
  const users = ['alice', 'bob', 'carol', 'dave', 'erin']
  const keys = new Map(users.map((user) => [user, generateKeyPairSync('ed25519')]))
  // A fixed pseudo-random sequence, so a failure can be replayed.
  let seed = 42
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
    return seed / 2 ** 31
  }
  // Signing times all differ, so which nonce expires or is forgotten first is never a tie.
  const times = new Set<number>()
  const sent: { user: string; proof: ReturnType<typeof signPortRequest> }[] = []
  const taken = new Set<string>()
  const reasons = new Map<string | undefined, number>()
  for (let i = 0; i < 3_000; i++) {
    now += Math.floor(random() < 0.05 ? random() * PROOF_WINDOW_MS : random() * 2_000)
    let request = sent[Math.floor(random() * sent.length)]
    if (request === undefined || random() < 0.6) {
      let at: number
      do at = now + Math.floor((random() * 2 - 1) * PROOF_WINDOW_MS)
      while (times.has(at))
      times.add(at)
      const user = users[Math.floor(random() * users.length)]!
      request = { user, proof: signPortRequest(keys.get(user)!.privateKey, fields, at) }
      sent.push(request)
    }
    const { user, proof } = request
    const refusal = proofs.refusal(proof, 'c1', ['pi-1'], 'webui', keys.get(user)!.publicKey, user)
    const reason = refusal?.match(/more than 5 minutes|forgot|used before|too many forwarded-port requests from|too many forwarded-port requests in/)?.[0]
    const expected = plain.refusal(user, proof.nonce, proof.at, now)
    const kinds: Record<string, string> = {
      window: 'more than 5 minutes',
      forgot: 'forgot',
      used: 'used before',
      'user full': 'too many forwarded-port requests from',
      full: 'too many forwarded-port requests in',
    }
    if (reason !== (expected && kinds[expected])) {
      t.fail(`request ${i} by ${user}: ${refusal ?? 'taken'}, where the plain rules say ${expected ?? 'taken'}`)
      break
    }
    reasons.set(expected, (reasons.get(expected) ?? 0) + 1)
    if (refusal !== undefined) continue
    if (taken.has(user + proof.nonce)) t.fail(`request ${i} taken twice`)
    taken.add(user + proof.nonce)
  }
  for (const reason of [undefined, 'window', 'forgot', 'used', 'user full']) t.ok(reasons.get(reason), `some requests were ${reason ?? 'taken'}`)
})

t.test('nonces are forgotten the first to expire first, whatever order they came in', async (t) => {
  let now = 6_000_000
  const proofs = new PortProofs(() => now, { total: 40, perUser: 32 })
  const take = (key: typeof alice, user: string, proof: ReturnType<typeof signPortRequest>) => proofs.refusal(proof, 'c1', ['pi-1'], 'webui', key.publicKey, user)
  // Signed a second apart, sent shuffled (13 and 32 have no common factor).
  const signed = Array.from({ length: 32 }, (_, i) => signPortRequest(alice.privateKey, fields, now - 60_000 + i * 1_000))
  for (let i = 0; i < 32; i++) t.equal(take(alice, 'alice', signed[(i * 13) % 32]!), undefined)

  now = signed[4]!.at + PROOF_WINDOW_MS + 1
  const fresh = () => take(alice, 'alice', signPortRequest(alice.privateKey, fields, now))
  t.same([fresh(), fresh(), fresh(), fresh(), fresh()], [undefined, undefined, undefined, undefined, undefined], 'the five signed first expired, making room for five more')
  t.match(fresh(), /too many forwarded-port requests from alice/, 'and no more')

  // Bob fills the memory, then each of his requests makes alice, holding the most, forget her oldest.
  for (let i = 0; i < 8 + 3; i++) t.equal(take(bob, 'bob', signPortRequest(bob.privateKey, fields, now)), undefined)
  const replays = signed.slice(5).map((proof) => take(alice, 'alice', proof))
  t.match(replays.slice(0, 3), Array(3).fill(/no later than requests this node forgot/), 'her three oldest left were forgotten')
  t.match(replays.slice(3), Array(32 - 8).fill(/used before/), 'and only those')
})
