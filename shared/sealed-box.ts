// Messages sealed with keys from an X25519 exchange: HKDF-SHA256 over the shared secret gives
// a request key and a reply key, each of which seals one message only (AES-256-GCM, so a
// fixed nonce never repeats under a key). The plain SSH stream's handshake
// (protocol/ssh-stream.ts) and sealed logins (sealed-login.ts) are built on it. Every
// primitive is Node's (OpenSSL's).

import { createCipheriv, createDecipheriv, createPublicKey, diffieHellman, hkdfSync, type KeyObject } from 'node:crypto'

/** An X25519 public key as it travels: base64url, as JWK's x. */
export function rawX25519(key: KeyObject): string {
  return key.export({ format: 'jwk' }).x as string
}

export function x25519Key(raw: string): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw }, format: 'jwk' })
}

/** The request key and the reply key of one exchange: `privateKey` with the peer's `peer` key, bound by `salt` and `info`. */
export function exchangeKeys(privateKey: KeyObject, peer: string, salt: Buffer, info: string): { request: Buffer; reply: Buffer } {
  const secret = diffieHellman({ privateKey, publicKey: x25519Key(peer) })
  const keys = Buffer.from(hkdfSync('sha256', secret, salt, info, 64))
  return { request: keys.subarray(0, 32), reply: keys.subarray(32) }
}

const NONCE = Buffer.alloc(12)

/** `value` as JSON, sealed with `key` (one message per key), base64. */
export function sealJson(key: Buffer, value: unknown): string {
  const cipher = createCipheriv('aes-256-gcm', key, NONCE)
  return Buffer.concat([cipher.update(JSON.stringify(value)), cipher.final(), cipher.getAuthTag()]).toString('base64')
}

/** What `sealed` holds; throws `refusal` when it does not open with `key`. */
export function openJson(key: Buffer, sealed: string, refusal = 'the sealed message does not open with its key'): unknown {
  const bytes = Buffer.from(sealed, 'base64')
  if (bytes.length < 16) throw new Error('the sealed message is too short')
  const decipher = createDecipheriv('aes-256-gcm', key, NONCE)
  decipher.setAuthTag(bytes.subarray(bytes.length - 16))
  let plain: Buffer
  try {
    plain = Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - 16)), decipher.final()])
  } catch {
    throw new Error(refusal)
  }
  return JSON.parse(plain.toString('utf8'))
}
