// What a person types to log in or sign up (password, second-factor code, sign-up token),
// sealed for the auth server, so that the proxy that carries it reads none of it: a proxy
// ends the client's TLS, and whoever holds a proxy's keys would otherwise collect passwords
// and use a code before the real request arrives. The cluster has one sealing key (X25519,
// in the backend, the same for every auth server), which the auth server offers with each
// challenge, signed by its host CA keys; the client seals only to a key that a host CA it
// trusts signed. A box is X25519 with a key of the client's own for this one message, HKDF-
// SHA256 over both public keys and what the box is for, and AES-256-GCM (sealed-box.ts). The
// answer to a sealed request (the second factor's secret at sign-up) is sealed back with a key derived
// from the same exchange. SECURITY.md, "A stolen proxy".

import { generateKeyPairSync, hkdfSync, type KeyObject, randomBytes } from 'node:crypto'
import { type Out, object, text } from './protocol/shape.ts'
import { exchangeKeys, openJson, rawX25519, sealJson, x25519Key } from './sealed-box.ts'
import { type HostCASignatures, signedByHostCA, signWithHostCAs, type TrustSigner } from './trust-statement.ts'

const KEY_PURPOSE = 'warren login sealing key v1'
const BOX_INFO = 'warren sealed login v1'
const ANSWER_INFO = 'warren sealed answer v1'

/** The cluster's sealing key (X25519, base64url as JWK's x) and the host CAs' signatures of it. */
export interface SealingKeyStatement {
  key: string
  signatures: HostCASignatures
}

export const SEALED = object({
  /** The client's key for this message (X25519, base64url). */
  key: text({ max: 64 }),
  /** The sealed value, base64 (sealed-box.ts). */
  box: text({ max: 8192 }),
})
export type Sealed = Out<typeof SEALED>

/** The auth server's statement of its sealing key, signed by its host CA keys. */
export function signSealingKey(clusterName: string, publicKey: KeyObject, signers: TrustSigner[]): SealingKeyStatement {
  const key = rawX25519(publicKey)
  return { key, signatures: signWithHostCAs(KEY_PURPOSE, [clusterName, key], signers) }
}

/** The sealing key, when a host CA among `trustedPems` signed it for this cluster; else undefined. */
export function trustedSealingKey(clusterName: string, statement: SealingKeyStatement | undefined, trustedPems: string[]): KeyObject | undefined {
  if (!statement || typeof statement.key !== 'string' || !Array.isArray(statement.signatures)) return undefined
  // A client that joins or logs in many times (a provisioning script) checks each statement once.
  const checked = JSON.stringify([clusterName, statement, trustedPems])
  const known = trustedStatements.get(checked)
  if (known) return known
  if (!signedByHostCA(KEY_PURPOSE, [clusterName, statement.key], statement.signatures, trustedPems)) return undefined
  let key: KeyObject
  try {
    key = x25519Key(statement.key)
  } catch {
    return undefined
  }
  trustedStatements.set(checked, key)
  if (trustedStatements.size > TRUSTED_STATEMENTS_KEPT) trustedStatements.delete(trustedStatements.keys().next().value!)
  return key
}

/** Statements found signed, by what was checked: a few (a CA rotation makes a second). */
const trustedStatements = new Map<string, KeyObject>()
const TRUSTED_STATEMENTS_KEPT = 4

/** The keys of one exchange, bound to what the box is for (`purpose`: its route and challenge) and both public keys. */
function boxKeys(privateKey: KeyObject, peer: string, purpose: string, clientKey: string, serverKey: string): { request: Buffer; reply: Buffer } {
  return exchangeKeys(privateKey, peer, Buffer.from(purpose), `${BOX_INFO}\0${clientKey}\0${serverKey}`)
}

/**
 * The client's side: `value` sealed for the holder of `serverKey`, for `purpose` (what the
 * box is for and what it is bound to, e.g. the route and the challenge), and the key that
 * opens the answer (openAnswer).
 */
export function seal(serverKey: KeyObject, purpose: string, value: unknown): { sealed: Sealed; replyKey: Buffer } {
  const own = generateKeyPairSync('x25519')
  const key = rawX25519(own.publicKey)
  const server = rawX25519(serverKey)
  const keys = boxKeys(own.privateKey, server, purpose, key, server)
  return { sealed: { key, box: sealJson(keys.request, value) }, replyKey: keys.reply }
}

/**
 * The answer to a sealed request, under a key of its own: the exchange's reply key with a
 * salt the server draws. A request not bound to a challenge (a sign-up's start) can be sent
 * again, and two answers must never be sealed with one key and nonce.
 */
export function sealAnswer(replyKey: Buffer, value: unknown): string {
  const salt = randomBytes(16)
  return `${salt.toString('base64url')}.${sealJson(answerKey(replyKey, salt), value)}`
}

/** What an answer sealed with sealAnswer holds; throws when it does not open with `replyKey`. */
export function openAnswer(replyKey: Buffer, sealed: string): unknown {
  const dot = sealed.indexOf('.')
  if (dot < 0) throw new Error('the sealed answer is malformed')
  return openJson(answerKey(replyKey, Buffer.from(sealed.slice(0, dot), 'base64url')), sealed.slice(dot + 1))
}

function answerKey(replyKey: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', replyKey, salt, ANSWER_INFO, 32))
}

/** The auth server's side: what `sealed` holds, for `purpose`, and the key to seal the answer with (sealAnswer); throws when it does not open. */
export function openSealed(serverKey: { privateKey: KeyObject; publicKey: KeyObject }, purpose: string, sealed: Sealed): { value: unknown; replyKey: Buffer } {
  const keys = boxKeys(serverKey.privateKey, sealed.key, purpose, sealed.key, rawX25519(serverKey.publicKey))
  return { value: openJson(keys.request, sealed.box), replyKey: keys.reply }
}
