// The node's memory of signed port requests: one user cannot use up the room of the others,
// and a request's nonce is forgotten once the request could no longer be taken anyway.

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
