// Which public keys the cluster certifies. Every issuance point (join, renewal, user
// certificates) asks here, so a key type refused at one door is refused at all of them.
// Accepted: Ed25519, ECDSA P-256 and P-384 for TLS (and RSA of 2048 to 4096 bits with a
// usual public exponent, which some devices' hardware still makes); Ed25519 for SSH, the only
// type ssh-cert.ts encodes.

import { createHash, type KeyObject } from 'node:crypto'

const ACCEPTED = 'use Ed25519, ECDSA P-256 or P-384'
const MIN_RSA_BITS = 2048
/**
 * Larger RSA keys, or public exponents beyond 2^32 (65537 is the usual one), only make each
 * check of their signatures dearer: one with a 3000-bit exponent costs 70 times a usual one,
 * at every join and handshake, for whoever sends it.
 */
const MAX_RSA_BITS = 4096
const MAX_RSA_EXPONENT = 2n ** 32n

/** OpenSSL's curve names as people know them. */
const CURVES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }
const ACCEPTED_CURVES = ['P-256', 'P-384']

export class KeyPolicyError extends Error {}

/** The key's type as a person would name it: "Ed25519", "P-256", "secp256k1", "RSA-1024". */
export function keyTypeName(key: KeyObject): string {
  const type = key.asymmetricKeyType ?? 'unknown'
  const details = key.asymmetricKeyDetails ?? {}
  if (type === 'ec') return CURVES[details.namedCurve ?? ''] ?? details.namedCurve ?? 'unknown curve'
  if (type === 'rsa') return `RSA-${details.modulusLength ?? 0}`
  if (type === 'ed25519') return 'Ed25519'
  if (type === 'ed448') return 'Ed448'
  return type.toUpperCase()
}

/** Throws KeyPolicyError naming the key type unless the cluster certifies TLS keys of that type. */
export function checkTlsKey(key: KeyObject): void {
  if (key.type !== 'public') throw new KeyPolicyError('a public key is expected')
  const name = keyTypeName(key)
  if (key.asymmetricKeyType === 'ed25519' || ACCEPTED_CURVES.includes(name)) return
  if (key.asymmetricKeyType === 'rsa' && usualRsa(key)) return
  const rsa = key.asymmetricKeyType === 'rsa' ? ` (RSA keys need ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits and a public exponent below 2^32)` : ''
  throw new KeyPolicyError(`"${name}" keys are not accepted: ${ACCEPTED}${rsa}`)
}

function usualRsa(key: KeyObject): boolean {
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
  const exponent = key.asymmetricKeyDetails?.publicExponent ?? 0n
  return bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS && exponent > 1n && exponent < MAX_RSA_EXPONENT
}

/** SSH keys: Ed25519 only. */
export function checkSshKey(key: KeyObject): void {
  if (key.type !== 'public') throw new KeyPolicyError('a public key is expected')
  if (key.asymmetricKeyType !== 'ed25519') throw new KeyPolicyError(`"${keyTypeName(key)}" SSH keys are not accepted: use ssh-ed25519`)
}

/** SHA-256 over the key's SubjectPublicKeyInfo, in hex: how the registry remembers a host's TLS key. */
export function publicKeyFingerprint(key: KeyObject): string {
  return createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('hex')
}
