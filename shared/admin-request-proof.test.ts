// An admin request's signature by the person: taken for the request it was made for, within
// its window, and for nothing else.

import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { ADMIN_PROOF_WINDOW_MS, bodyDigest, readAdminProof, signAdminRequest } from './admin-request-proof.ts'

const eve = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const other = generateKeyPairSync('ed25519')
const request = { cluster: 'c1', method: 'POST', path: '/v1/tokens' }
const now = 1_800_000_000_000

t.test('the request signed is taken, with the digest of its body', async (t) => {
  const proof = readAdminProof(signAdminRequest(eve.privateKey, 'c1', 'POST', '/v1/tokens', { roles: 'node' }, now), request, eve.publicKey, now)
  t.match(proof, { at: now, body_sha256: bodyDigest({ roles: 'node' }) })
  t.not(bodyDigest({ roles: 'node' }), bodyDigest({ roles: 'proxy' }))
  t.equal(bodyDigest(undefined), bodyDigest({}), 'no body reads as the empty object a proxy passes on')
})

t.test('another request, key, cluster or time is refused', async (t) => {
  const header = signAdminRequest(eve.privateKey, 'c1', 'POST', '/v1/tokens', {}, now)
  t.match(readAdminProof(header, { ...request, path: '/v1/tokens?x=1' }, eve.publicKey, now), /not signed by the key/)
  t.match(readAdminProof(header, { ...request, method: 'DELETE' }, eve.publicKey, now), /not signed by the key/)
  t.match(readAdminProof(header, { ...request, cluster: 'c2' }, eve.publicKey, now), /not signed by the key/)
  t.match(readAdminProof(header, request, other.publicKey, now), /not signed by the key/)
  t.match(readAdminProof(header, request, eve.publicKey, now + ADMIN_PROOF_WINDOW_MS + 1), /more than 5 minutes/)
  t.match(readAdminProof(undefined, request, eve.publicKey, now), /not signed by the user's key/)
  t.match(readAdminProof('bm90IGpzb24', request, eve.publicKey, now), /malformed/)
})
