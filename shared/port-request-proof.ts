// A forwarded port's request, signed by the user's own SSH key. The node judges a port
// request by the user's OpenSSH certificate it carries, but a certificate is no secret:
// whoever relays one (a proxy, or anyone holding a proxy's keys) could present it again to
// open the ports its roles allow. So the user's client signs each request (the cluster, the
// node as the user named it, the port, the time, a random nonce) with the key the
// certificate certifies, and the node takes a request only with a signature by that key,
// made within PROOF_WINDOW_MS of its own clock, whose nonce it has not seen: a relayed
// request opens at most the one stream the user asked for. SECURITY.md, "A forwarded port".

import { type KeyObject, randomBytes, sign, verify } from 'node:crypto'
import { number, type Out, object, text } from './protocol/shape.ts'

const PURPOSE = 'warren port request v1'

/**
 * How far the time a request was signed may be from the node's clock, either way: the
 * user's and the node's clocks apart, and the request's way through the proxy.
 */
export const PROOF_WINDOW_MS = 5 * 60_000
/**
 * Nonces a node keeps, at most: the requests of PROOF_WINDOW_MS either side (about 80 a
 * second, held for ten minutes: a few MB at the most). Beyond it the oldest are forgotten to
 * make room, and requests signed no later than them are refused from then on, so a request
 * is still taken only once; only a flood that forgot nonces of the last seconds would refuse
 * a request just signed.
 */
export const MAX_REMEMBERED_NONCES = 50_000
/** Of those, one user's at most: beyond it that user's requests are refused until old ones age out. */
export const MAX_NONCES_PER_USER = 5_000
/**
 * Nonces looked at, oldest seen first, for one to forget: those signed ahead of the node's
 * clock (a client's clock ahead) cannot be, as the time they would refuse is still to come.
 * Bounded, so that a memory full of them costs each request little; then it is refused.
 */
const FORGET_LOOKAHEAD = 64

export const PORT_PROOF = object({
  /** When the client signed (epoch ms, its clock). */
  at: number({ atLeast: 0, expected: 'a time in ms' }),
  nonce: text({ max: 64 }),
  /** Ed25519 by the key the certificate certifies, base64. */
  signature: text({ max: 256 }),
})
export type PortProof = Out<typeof PORT_PROOF>

/** What a proof is a proof of. */
export interface PortRequestFields {
  cluster: string
  /** The node as the user named it: its name or its host ID. */
  node: string
  port: string
}

function signedBytes(fields: PortRequestFields, at: number, nonce: string): Buffer {
  return Buffer.from(`${PURPOSE}\n${JSON.stringify([fields.cluster, fields.node, fields.port, at, nonce])}`)
}

/** The user's client: a proof for one request, signed with the user's SSH private key. */
export function signPortRequest(key: KeyObject, fields: PortRequestFields, now = Date.now()): PortProof {
  const nonce = randomBytes(16).toString('base64url')
  return { at: now, nonce, signature: sign(null, signedBytes(fields, now, nonce), key).toString('base64') }
}

/** The node's side: checks proofs, and remembers their nonces for as long as they could be used. */
export class PortProofs {
  /** The user and nonce → when it was signed (epoch ms, the client's clock) and whose it is, in the order seen. */
  private readonly seen = new Map<string, { at: number; user: string }>()
  /** How many of `seen` each user has. */
  private readonly perUser = new Map<string, number>()
  /** Proofs signed at or before this time are refused: nonces that old were forgotten to make room. */
  private floor = Number.NEGATIVE_INFINITY
  private readonly now: () => number
  private readonly limits: { total: number; perUser: number }

  constructor(now: () => number = Date.now, limits = { total: MAX_REMEMBERED_NONCES, perUser: MAX_NONCES_PER_USER }) {
    this.now = now
    this.limits = limits
  }

  /**
   * Why the request is refused, or undefined when `proof` shows the holder of `publicKey`
   * asked for this port on this node (named by `names`: its name or host ID) just now,
   * and for the first time. A proof taken is remembered.
   */
  refusal(proof: PortProof | undefined, cluster: string, names: string[], port: string, publicKey: KeyObject, user: string): string | undefined {
    if (proof === undefined) return "the request is not signed by the user's key: warren proxy port must be of this node's version or later"
    const now = this.now()
    this.forget(now)
    const node = names.find((name) => verify(null, signedBytes({ cluster, node: name, port }, proof.at, proof.nonce), publicKey, Buffer.from(proof.signature, 'base64')))
    if (node === undefined) return "the request's signature is not the certificate key's for this port of this node"
    if (Math.abs(now - proof.at) > PROOF_WINDOW_MS) {
      return `the request was signed ${new Date(proof.at).toISOString()}, more than ${PROOF_WINDOW_MS / 60_000} minutes from this node's clock (${new Date(now).toISOString()})`
    }
    if (proof.at <= this.floor) {
      return `the request was signed ${new Date(proof.at).toISOString()}, no later than requests this node forgot to make room for others (too many in the last minutes): ask again`
    }
    const key = `${user}\n${proof.nonce}`
    if (this.seen.has(key)) return 'the request was used before: a signed request opens one stream'
    const users = this.perUser.get(user) ?? 0
    if (users >= this.limits.perUser) return `too many forwarded-port requests from ${user} in the last minutes: try again shortly`
    if (this.seen.size >= this.limits.total && !this.makeRoom(now)) return 'too many forwarded-port requests in the last minutes: try again shortly'
    this.seen.set(key, { at: proof.at, user })
    this.perUser.set(user, users + 1)
    return undefined
  }

  /** Forgets the oldest nonce seen that was signed no later than `now`, and from then on refuses what was signed before it; false when none of the first few was. */
  private makeRoom(now: number): boolean {
    let looked = 0
    for (const [key, { at, user }] of this.seen) {
      if (++looked > FORGET_LOOKAHEAD) return false
      if (at > now) continue
      this.drop(key, user)
      this.floor = Math.max(this.floor, at)
      return true
    }
    return false
  }

  private drop(key: string, user: string): void {
    this.seen.delete(key)
    const left = (this.perUser.get(user) ?? 1) - 1
    if (left > 0) this.perUser.set(user, left)
    else this.perUser.delete(user)
  }

  /**
   * Drops nonces whose proofs are too old to be taken again, oldest seen first, up to the
   * first one still in force: seen order is close to time order, and one kept a little
   * longer is only remembered longer.
   */
  private forget(now: number): void {
    for (const [key, { at, user }] of this.seen) {
      if (at + PROOF_WINDOW_MS >= now) return
      this.drop(key, user)
    }
  }
}
