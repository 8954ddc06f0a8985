// Proof of possession for a join: the joining device signs, with each private key it asks
// the cluster to certify, a message that binds a fresh server nonce to both public keys.
// Without it anyone could have any public key certified (the host CA's own, say); with
// it, only the holder of the private keys can. The message is domain-separated (a purpose
// string and the cluster's name come first) and every field is length-prefixed, so a
// signature made for anything else can never be read as this one.

import { type KeyObject, sign, verify } from 'node:crypto'

const PURPOSE = 'warren join proof-of-possession v1'
/**
 * A device whose certificate expired proves the same keys the same way to recover it
 * (auth/recovery.ts), under a purpose of its own: a join's proof never reads as a recovery's.
 */
export const RECOVERY_PURPOSE = 'warren recovery proof-of-possession v1'
/** A person logging in (or signing up) proves the keys the user CA is to certify the same way (auth/login-keys.ts). */
export const LOGIN_PURPOSE = 'warren login proof-of-possession v1'

export interface JoinProofFields {
  /** PURPOSE (a join) unless given. */
  purpose?: string
  clusterName: string
  nonce: string
  tlsPublicKey: KeyObject
  sshPublicKey: KeyObject
}

export function joinProofMessage(fields: JoinProofFields): Buffer {
  const parts = [
    Buffer.from(fields.purpose ?? PURPOSE, 'utf8'),
    Buffer.from(fields.clusterName, 'utf8'),
    Buffer.from(fields.nonce, 'utf8'),
    fields.tlsPublicKey.export({ type: 'spki', format: 'der' }),
    fields.sshPublicKey.export({ type: 'spki', format: 'der' }),
  ]
  return Buffer.concat(
    parts.flatMap((part) => {
      const length = Buffer.alloc(4)
      length.writeUInt32BE(part.length)
      return [length, part]
    }),
  )
}

/** The digest each key type signs with (Ed25519 hashes internally). */
function digestFor(key: KeyObject): string | null {
  if (key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448') return null
  const curve = key.asymmetricKeyDetails?.namedCurve
  if (curve === 'secp384r1') return 'sha384'
  if (curve === 'secp521r1') return 'sha512'
  return 'sha256'
}

/** A base64 signature of `message` by `privateKey`. */
export function signProof(message: Buffer, privateKey: KeyObject): string {
  return sign(digestFor(privateKey), message, privateKey).toString('base64')
}

/** Whether `signature` (base64) is `publicKey`'s signature of `message`; false for anything malformed. */
export function verifyProof(message: Buffer, publicKey: KeyObject, signature: string): boolean {
  if (signature.length === 0 || signature.length > 2048 || !/^[A-Za-z0-9+/]+={0,2}$/.test(signature)) return false
  try {
    return verify(digestFor(publicKey), message, publicKey, Buffer.from(signature, 'base64'))
  } catch {
    return false
  }
}
