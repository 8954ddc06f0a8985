// Sealing what people type for the auth server: a box opens only with the cluster's key and
// for what it was sealed for, its answer only with the key of that exchange, and a client
// takes the cluster's key only as a host CA it trusts signed it.

import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { openAnswer, openSealed, seal, sealAnswer, signSealingKey, trustedSealingKey } from './sealed-login.ts'
import { createCA } from './x509.ts'

const server = generateKeyPairSync('x25519')
const hostCA = createCA('host CA', 'c1')
const otherCA = createCA('another CA', 'c1')

t.test('a box opens for its purpose with the server key, and the answer with the exchange', async (t) => {
  const { sealed, replyKey } = seal(server.publicKey, 'login c1 n1 bob', { password: 'secret words' })
  const opened = openSealed(server, 'login c1 n1 bob', sealed)
  t.same(opened.value, { password: 'secret words' })
  t.same(openAnswer(replyKey, sealAnswer(opened.replyKey, { totp_secret: 'ABC' })), { totp_secret: 'ABC' })
  // The same request sent again gets the same reply key: each answer is sealed under a key of its own.
  const [first, second] = [sealAnswer(opened.replyKey, { totp_secret: 'ABC' }), sealAnswer(opened.replyKey, { totp_secret: 'ABC' })]
  t.not(first.slice(first.indexOf('.') + 1), second.slice(second.indexOf('.') + 1), 'two answers to one request differ')
  t.throws(() => openAnswer(generateKeyPairSync('x25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32), first), 'another reply key')
  t.throws(() => openSealed(server, 'login c1 n2 bob', sealed), 'sealed for another challenge')
  t.throws(() => openSealed(generateKeyPairSync('x25519'), 'login c1 n1 bob', sealed), 'another key')
  const tampered = Buffer.from(sealed.box, 'base64')
  tampered[20] ^= 1
  t.throws(() => openSealed(server, 'login c1 n1 bob', { ...sealed, box: tampered.toString('base64') }), 'a box changed on the way')
})

t.test("a client takes the cluster's key only as a trusted host CA signed it, for this cluster", async (t) => {
  const statement = signSealingKey('c1', server.publicKey, [{ certPem: hostCA.certPem, key: hostCA.key }])
  t.ok(trustedSealingKey('c1', statement, [hostCA.certPem]))
  t.equal(trustedSealingKey('c1', statement, [otherCA.certPem]), undefined, 'signed by a CA not trusted')
  t.equal(trustedSealingKey('c2', statement, [hostCA.certPem]), undefined, 'for another cluster')
  const swapped = { ...statement, key: signSealingKey('c1', generateKeyPairSync('x25519').publicKey, []).key }
  t.equal(trustedSealingKey('c1', swapped, [hostCA.certPem]), undefined, 'another key under the signature')
  t.equal(trustedSealingKey('c1', undefined, [hostCA.certPem]), undefined, 'none offered')
})
