// The node's memory of signed port requests: one user cannot use up the room of the others,
// a request's nonce is forgotten once the request could no longer be taken anyway, and a
// full memory makes room for new requests without ever taking one twice.

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

t.test('a full memory forgets its oldest nonces for new requests, and refuses what was signed no later than them', async (t) => {
  let now = 2_000_000
  const proofs = new PortProofs(() => now, { total: 4, perUser: 2 })
  const users = { alice, bob, carol: generateKeyPairSync('ed25519') }
  const sign = (user: keyof typeof users) => ({ user, proof: signPortRequest(users[user].privateKey, fields, now++) })
  const take = ({ user, proof }: ReturnType<typeof sign>) => proofs.refusal(proof, 'c1', ['pi-1'], 'webui', users[user].publicKey, user)
  const first = [sign('alice'), sign('alice'), sign('bob'), sign('bob')]
  for (const request of first) t.equal(take(request), undefined)
  t.equal(take(sign('carol')), undefined, 'carol is taken although the memory was full')
  t.match(take(first[0]), /no later than requests this node forgot/, 'the forgotten request is still refused if sent again')
  t.match(take(first[1]), /used before/, 'the next oldest is still remembered')
  t.equal(take(sign('alice')), undefined, "alice's forgotten request no longer counts against her")
  t.match(take(first[1]), /no later than requests this node forgot/, 'and it made room in turn')
})

t.test('nonces signed ahead of the node clock are not forgotten to make room', async (t) => {
  const now = 3_000_000
  const proofs = new PortProofs(() => now, { total: 2, perUser: 1 })
  const ahead = (key: typeof alice, user: string) => proofs.refusal(signPortRequest(key.privateKey, fields, now + 60_000), 'c1', ['pi-1'], 'webui', key.publicKey, user)
  t.equal(ahead(alice, 'alice'), undefined)
  t.equal(ahead(bob, 'bob'), undefined)
  const carol = generateKeyPairSync('ed25519')
  t.match(proofs.refusal(signPortRequest(carol.privateKey, fields, now), 'c1', ['pi-1'], 'webui', carol.publicKey, 'carol'), /too many forwarded-port requests in the last minutes/)
})
