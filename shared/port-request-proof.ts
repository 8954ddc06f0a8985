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
 * second, held for ten minutes: a few MB at the most). Beyond it the user holding the most
 * forgets the first of theirs to expire, and that user's requests signed no later than it are
 * refused from then on, so a request is still taken only once, and users flooding together
 * (even with requests dated ahead) only make room at their own expense.
 */
export const MAX_REMEMBERED_NONCES = 50_000
/** Of those, one user's at most: beyond it that user's requests are refused until old ones age out. */
export const MAX_NONCES_PER_USER = 5_000

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

/** A nonce taken, with its places in the two orders it is kept in. */
interface Remembered {
  key: string
  /** When it was signed (epoch ms, the client's clock): it expires PROOF_WINDOW_MS later. */
  at: number
  holder: Holder
  placeInAll: number
  placeInHolder: number
}

/** A user with nonces remembered. */
interface Holder {
  user: string
  nonces: ByExpiry<Remembered>
  /** This user's proofs signed at or before this time are refused: nonces that old were forgotten to make room. */
  floor: number
}

/**
 * A binary min-heap by signing time, so by expiry, that can also take out any entry in
 * O(log n): each entry is told its place, as it is kept in two heaps at once.
 */
class ByExpiry<T extends { at: number }> {
  private readonly items: T[] = []
  private readonly place: (item: T, index: number) => void

  constructor(place: (item: T, index: number) => void) {
    this.place = place
  }

  get size(): number {
    return this.items.length
  }

  first(): T | undefined {
    return this.items[0]
  }

  push(item: T): void {
    this.items.push(item)
    this.up(item, this.items.length - 1)
  }

  /**
   * Takes out the entry at `index` as though it were the first to expire (those above it move
   * down a place, the last entry fills the top), so removal has no rarely taken branch.
   */
  remove(index: number): void {
    const item = this.items[index]!
    for (; index > 0; index = (index - 1) >> 1) this.set(this.items[(index - 1) >> 1]!, index)
    const last = this.items.pop()!
    if (last !== item) this.down(last, 0)
  }

  private up(item: T, index: number): void {
    while (index > 0) {
      const parent = (index - 1) >> 1
      if (this.items[parent]!.at <= item.at) break
      this.set(this.items[parent]!, index)
      index = parent
    }
    this.set(item, index)
  }

  private down(item: T, index: number): void {
    for (;;) {
      let child = 2 * index + 1
      if (child >= this.items.length) break
      if (child + 1 < this.items.length && this.items[child + 1]!.at < this.items[child]!.at) child++
      if (this.items[child]!.at >= item.at) break
      this.set(this.items[child]!, index)
      index = child
    }
    this.set(item, index)
  }

  private set(item: T, index: number): void {
    this.items[index] = item
    this.place(item, index)
  }
}

/** The node's side: checks proofs, and remembers their nonces for as long as they could be used. */
export class PortProofs {
  /** The user and nonce → the nonce remembered. */
  private readonly seen = new Map<string, Remembered>()
  /** All nonces remembered, by expiry: forgotten as they expire, whatever order they came in. */
  private readonly all = new ByExpiry<Remembered>((nonce, index) => {
    nonce.placeInAll = index
  })
  /** Users with nonces remembered; one who has none has no floor worth keeping (see makeRoom). */
  private readonly holders = new Map<string, Holder>()
  /** How many nonces → the users holding that many, to find one holding the most in O(1). */
  private readonly holding = new Map<number, Set<Holder>>()
  /** The most nonces a user holds. */
  private most = 0
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
    const holder = this.holders.get(user)
    if (holder !== undefined && proof.at <= holder.floor) {
      return `the request was signed ${new Date(proof.at).toISOString()}, no later than requests this node forgot to make room for others (too many in the last minutes): ask again`
    }
    const key = `${user}\n${proof.nonce}`
    if (this.seen.has(key)) return 'the request was used before: a signed request opens one stream'
    if ((holder?.nonces.size ?? 0) >= this.limits.perUser) return `too many forwarded-port requests from ${user} in the last minutes: try again shortly`
    if (this.seen.size >= this.limits.total && !this.makeRoom()) return 'too many forwarded-port requests in the last minutes: try again shortly'
    this.remember(key, proof.at, user)
    return undefined
  }

  /**
   * Forgets, of a user holding the most, the nonce that expires first, and refuses that user's
   * proofs signed no later than it from then on: the cost of a flood falls on its senders,
   * whatever times they sign with. Only from a user holding two or more, so a floor always sits
   * at or below a nonce its user still holds and expires with it, keeping floors within the
   * bound; false when every user holds one (as many users as places).
   */
  private makeRoom(): boolean {
    if (this.most < 2) return false
    const holder: Holder = this.holding.get(this.most)!.values().next().value!
    const first = holder.nonces.first()!
    this.drop(first)
    holder.floor = Math.max(holder.floor, first.at)
    return true
  }

  private remember(key: string, at: number, user: string): void {
    let holder = this.holders.get(user)
    if (holder === undefined) {
      holder = {
        user,
        nonces: new ByExpiry<Remembered>((nonce, index) => {
          nonce.placeInHolder = index
        }),
        floor: Number.NEGATIVE_INFINITY,
      }
      this.holders.set(user, holder)
    }
    const nonce: Remembered = { key, at, holder, placeInAll: 0, placeInHolder: 0 }
    this.seen.set(key, nonce)
    this.all.push(nonce)
    holder.nonces.push(nonce)
    this.recount(holder, holder.nonces.size - 1)
  }

  private drop(nonce: Remembered): void {
    const { holder } = nonce
    this.seen.delete(nonce.key)
    this.all.remove(nonce.placeInAll)
    holder.nonces.remove(nonce.placeInHolder)
    this.recount(holder, holder.nonces.size + 1)
    if (holder.nonces.size === 0) this.holders.delete(holder.user)
  }

  /** Moves `holder` from the users holding `before` nonces to those holding as many as it now does. */
  private recount(holder: Holder, before: number): void {
    const after = holder.nonces.size
    const was = this.holding.get(before)
    was?.delete(holder)
    if (was?.size === 0) this.holding.delete(before)
    if (after > 0) {
      const now = this.holding.get(after)
      if (now === undefined) this.holding.set(after, new Set([holder]))
      else now.add(holder)
    }
    // Counts move by one, so when the last holder of the most drops, the next most is one less.
    if (after > this.most) this.most = after
    else if (before === this.most && !this.holding.has(before)) this.most = after
  }

  /** Drops nonces whose proofs are too old to be taken again, the first to expire first. */
  private forget(now: number): void {
    for (let first = this.all.first(); first !== undefined && first.at + PROOF_WINDOW_MS < now; first = this.all.first()) this.drop(first)
  }
}
