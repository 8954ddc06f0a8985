// What a person types to log in or sign up (password, second-factor code, sign-up token),
// sealed for the auth server, so that the proxy that carries it reads none of it: a proxy
// ends the client's TLS, and whoever holds a proxy's keys would otherwise collect passwords
// and use a code before the real request arrives. The cluster has one sealing key (X25519,
// in the backend, the same for every auth server), which the auth server offers with each
// challenge, signed by its host CA keys; the client seals only to a key that a host CA it
// trusts signed. A box is X25519 with a key of the client's own for this one message, HKDF-
// SHA256 over both public keys and what the box is for, and AES-256-GCM. The answer to a
// sealed request (the second factor's secret at sign-up) is sealed back with a key derived
// from the same exchange. SECURITY.md, "A stolen proxy".

import { createCipheriv, createDecipheriv, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject, randomBytes } from 'node:crypto'
import { object, text } from './protocol/shape.ts'
import { type HostCASignatures, signedByHostCA, signWithHostCAs, type TrustSigner } from './trust-statement.ts'

const KEY_PURPOSE = 'warren login sealing key v1'
const BOX_INFO = 'warren sealed login v1'

/** The cluster's sealing key (X25519, base64url as JWK's x) and the host CAs' signatures of it. */
export interface SealingKeyStatement {
  key: string
  signatures: HostCASignatures
}

export const SEALED = object({
  /** The client's key for this message (X25519, base64url). */
  key: text({ max: 64 }),
  /** IV, ciphertext and tag, base64. */
  box: text({ max: 8192 }),
})
export interface Sealed {
  key: string
  box: string
}

export function rawKey(key: KeyObject): string {
  return key.export({ format: 'jwk' }).x as string
}

export function x25519Key(raw: string): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw }, format: 'jwk' })
}

/** The auth server's statement of its sealing key, signed by its host CA keys. */
export function signSealingKey(clusterName: string, publicKey: KeyObject, signers: TrustSigner[]): SealingKeyStatement {
  const key = rawKey(publicKey)
  return { key, signatures: signWithHostCAs(KEY_PURPOSE, [clusterName, key], signers) }
}

/** The sealing key, when a host CA among `trustedPems` signed it for this cluster; else undefined. */
export function trustedSealingKey(clusterName: string, statement: SealingKeyStatement | undefined, trustedPems: string[]): KeyObject | undefined {
  if (!statement || typeof statement.key !== 'string' || !Array.isArray(statement.signatures)) return undefined
  if (!signedByHostCA(KEY_PURPOSE, [clusterName, statement.key], statement.signatures, trustedPems)) return undefined
  try {
    return x25519Key(statement.key)
  } catch {
    return undefined
  }
}

/** The two keys of one exchange: the request's, and the answer's. */
function boxKeys(secret: Buffer, clientKey: string, serverKey: string, purpose: string): { request: Buffer; reply: Buffer } {
  const derive = (which: string) => Buffer.from(hkdfSync('sha256', secret, Buffer.from(`${clientKey}.${serverKey}`), `${BOX_INFO}\n${which}\n${purpose}`, 32))
  return { request: derive('request'), reply: derive('reply') }
}

function encrypt(key: Buffer, value: unknown): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  const sealed = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()])
  return Buffer.concat([iv, sealed, cipher.getAuthTag()]).toString('base64')
}

function decrypt(key: Buffer, box: string): unknown {
  const bytes = Buffer.from(box, 'base64')
  if (bytes.length < 12 + 16) throw new Error('the sealed box is too short')
  const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12))
  decipher.setAuthTag(bytes.subarray(bytes.length - 16))
  return JSON.parse(Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]).toString('utf8'))
}

/**
 * The client's side: `value` sealed for the holder of `serverKey`, for `purpose` (what the
 * box is for and what it is bound to, e.g. the route and the challenge), and the key that
 * opens the answer.
 */
export function seal(serverKey: KeyObject, purpose: string, value: unknown): { sealed: Sealed; replyKey: Buffer } {
  const own = generateKeyPairSync('x25519')
  const key = rawKey(own.publicKey)
  const keys = boxKeys(diffieHellman({ privateKey: own.privateKey, publicKey: serverKey }), key, rawKey(serverKey), purpose)
  return { sealed: { key, box: encrypt(keys.request, value) }, replyKey: keys.reply }
}

/** The auth server's side: what `sealed` holds, for `purpose`, and the key to seal the answer with; throws when it does not open. */
export function openSealed(serverKey: { privateKey: KeyObject; publicKey: KeyObject }, purpose: string, sealed: Sealed): { value: unknown; replyKey: Buffer } {
  const keys = boxKeys(diffieHellman({ privateKey: serverKey.privateKey, publicKey: x25519Key(sealed.key) }), sealed.key, rawKey(serverKey.publicKey), purpose)
  return { value: decrypt(keys.request, sealed.box), replyKey: keys.reply }
}

export function sealReply(replyKey: Buffer, value: unknown): string {
  return encrypt(replyKey, value)
}

export function openReply(replyKey: Buffer, box: string): unknown {
  return decrypt(replyKey, box)
}
