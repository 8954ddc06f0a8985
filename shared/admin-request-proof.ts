// An admin request that a proxy carries for a person (warrenctl as a login, through a proxy),
// signed by the person's own TLS key. The proxy vouches for the person with their
// certificate (x-warren-user-cert), but a certificate is no secret: it passes the proxy in
// every handshake, so whoever holds a proxy's keys could otherwise administer the cluster as
// any editor whose certificate it has seen. warrenctl therefore signs each request (the
// cluster, method, path with its query, the body's digest, the time and a random nonce), and
// the auth server takes the proxy's word only with that signature, made within
// ADMIN_PROOF_WINDOW_MS of its own clock, over the request as it arrived, with a nonce not
// used before (auth/api/access.ts). SECURITY.md, "A stolen proxy".

import { createHash, type KeyObject, randomBytes } from 'node:crypto'
import { signProof, verifyProof } from './join-proof.ts'
import { number, type Out, object, parseWith, text } from './protocol/shape.ts'

/** The header that carries the proof, as base64url of its JSON. */
export const ADMIN_PROOF_HEADER = 'x-warren-admin-proof'
/** How far the time a request was signed may be from the auth server's clock, either way. */
export const ADMIN_PROOF_WINDOW_MS = 5 * 60_000

const PURPOSE = 'warren admin request v1'

const ADMIN_REQUEST_PROOF = object({
  /** When the person's client signed (epoch ms, its clock). */
  at: number({ atLeast: 0, expected: 'a time in ms' }),
  nonce: text({ max: 64 }),
  /** SHA-256 (hex) of the body as JSON (`{}` when there is none): what the auth server reads. */
  body_sha256: text({ max: 64 }),
  /** By the key the person's TLS certificate certifies, base64. */
  signature: text({ max: 1024 }),
})
export type AdminRequestProof = Out<typeof ADMIN_REQUEST_PROOF>

/** The digest a request's body is signed by: of its JSON, `{}` for none, as a proxy passes it on. */
export function bodyDigest(body: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(body ?? {}))
    .digest('hex')
}

function signedBytes(cluster: string, method: string, path: string, proof: Omit<AdminRequestProof, 'signature'>): Buffer {
  return Buffer.from(`${PURPOSE}\n${JSON.stringify([cluster, method, path, proof.at, proof.nonce, proof.body_sha256])}`)
}

/** The header's value for one request, signed with the person's TLS private key. */
export function signAdminRequest(key: KeyObject, cluster: string, method: string, path: string, body: unknown, now = Date.now()): string {
  const unsigned = { at: now, nonce: randomBytes(16).toString('base64url'), body_sha256: bodyDigest(body) }
  const proof: AdminRequestProof = { ...unsigned, signature: signProof(signedBytes(cluster, method, path, unsigned), key) }
  return Buffer.from(JSON.stringify(proof)).toString('base64url')
}

/**
 * The proof in `header` once it shows that the holder of `publicKey` signed this request
 * (`method` `path`, of `cluster`) within the window around `now`; else why not. The body's
 * digest and the nonce are the caller's to check.
 */
export function readAdminProof(
  header: string | undefined,
  request: { cluster: string; method: string; path: string },
  publicKey: KeyObject,
  now: number,
): AdminRequestProof | string {
  if (header === undefined) return "the request is not signed by the user's key: warrenctl must be of the auth server's version or later"
  let proof: AdminRequestProof
  try {
    if (header.length > 2048) throw new Error('too long')
    proof = parseWith('admin request proof', ADMIN_REQUEST_PROOF, JSON.parse(Buffer.from(header, 'base64url').toString('utf8')))
    if (!/^[0-9a-f]{64}$/.test(proof.body_sha256)) throw new Error('not a SHA-256 digest')
  } catch {
    return "the request's signature is malformed"
  }
  if (!verifyProof(signedBytes(request.cluster, request.method, request.path, proof), publicKey, proof.signature)) {
    return "the request is not signed by the key of the user's certificate"
  }
  if (Math.abs(now - proof.at) > ADMIN_PROOF_WINDOW_MS) {
    return `the request was signed ${new Date(proof.at).toISOString()}, more than ${ADMIN_PROOF_WINDOW_MS / 60_000} minutes from the auth server's clock`
  }
  return proof
}
