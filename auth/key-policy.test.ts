import { createPublicKey, generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { checkSshKey, checkTlsKey, KeyPolicyError, keyTypeName, publicKeyFingerprint } from './key-policy.ts'

const ec = (namedCurve: string) => generateKeyPairSync('ec', { namedCurve }).publicKey

t.test('TLS keys: Ed25519, ECDSA P-256 and P-384, RSA from 2048 bits are accepted', async (t) => {
  for (const key of [generateKeyPairSync('ed25519').publicKey, ec('P-256'), ec('P-384'), generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey]) {
    t.doesNotThrow(() => checkTlsKey(key), keyTypeName(key))
  }
})

t.test('other TLS keys are refused by name', async (t) => {
  t.throws(() => checkTlsKey(ec('secp256k1')), new KeyPolicyError('"secp256k1" keys are not accepted: use Ed25519, ECDSA P-256 or P-384'))
  t.throws(() => checkTlsKey(ec('P-521')), new KeyPolicyError('"P-521" keys are not accepted: use Ed25519, ECDSA P-256 or P-384'))
  t.throws(
    () => checkTlsKey(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey),
    new KeyPolicyError('"RSA-1024" keys are not accepted: use Ed25519, ECDSA P-256 or P-384 (RSA keys need 2048 to 4096 bits and a public exponent below 2^32)'),
  )
  // Keys that only make each check of their signatures dearer, for whoever sends them.
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' })
  const hugeExponent = createPublicKey({ key: { ...jwk, e: Buffer.alloc(384, 0xff).toString('base64url') }, format: 'jwk' })
  t.throws(() => checkTlsKey(hugeExponent), /"RSA-2048" keys are not accepted: .*public exponent below 2\^32/)
  t.throws(() => checkTlsKey(generateKeyPairSync('rsa', { modulusLength: 4160 }).publicKey), /"RSA-4160" keys are not accepted: .*2048 to 4096 bits/)
  t.doesNotThrow(() => checkTlsKey(generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).publicKey), 'a small exponent is usual too')
  t.throws(() => checkTlsKey(generateKeyPairSync('ed448').publicKey), new KeyPolicyError('"Ed448" keys are not accepted: use Ed25519, ECDSA P-256 or P-384'))
  t.throws(() => checkTlsKey(generateKeyPairSync('x25519').publicKey), /"X25519" keys are not accepted/)
  t.throws(() => checkTlsKey(generateKeyPairSync('ed25519').privateKey), /a public key is expected/)
})

t.test('SSH keys: Ed25519 only', async (t) => {
  t.doesNotThrow(() => checkSshKey(generateKeyPairSync('ed25519').publicKey))
  t.throws(() => checkSshKey(ec('P-256')), new KeyPolicyError('"P-256" SSH keys are not accepted: use ssh-ed25519'))
})

t.test('a key fingerprint is the SHA-256 of its SubjectPublicKeyInfo', async (t) => {
  const { publicKey } = generateKeyPairSync('ed25519')
  t.match(publicKeyFingerprint(publicKey), /^[0-9a-f]{64}$/)
  t.equal(publicKeyFingerprint(publicKey), publicKeyFingerprint(publicKey))
  t.not(publicKeyFingerprint(publicKey), publicKeyFingerprint(generateKeyPairSync('ed25519').publicKey))
})
