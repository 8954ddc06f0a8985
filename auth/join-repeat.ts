// A join repeated because its answer was lost. A device whose connection dropped after the
// auth server had registered it (a proxy restarted, a cellular link fell, an etcd write timed
// out on the client side although etcd applied it) cannot tell whether it joined, so it asks
// again with the same keys (shared/enroll.ts). By then its single-use token is spent and its
// node name held by the host it registered: refused as any other join, the device would wait
// for a person with a new token, and the cluster would keep a host nobody has certificates for.
//
// So the transaction that registers a host also writes a receipt: which host a join with this
// token and this TLS key registered, keyed by the token's SHA-256 (as the token itself is
// stored) and the key's fingerprint, with nothing secret in it. A join that repeats one
// exactly (the same token, the same TLS and SSH public keys, node name, roles and public
// addresses, with the usual proof of possession over a fresh challenge) is answered as the
// first would have been: the same host ID, and certificates for the same keys issued now.
// Whoever asks holds those keys, so it gets only what their holder already could have: the
// first answer, and the renewals that follow it.
//
// Nothing else repeats: not after the token's original expiry (recorded in the receipt; a
// static token, which never expires, gives an hour), not for a host removed or replaced since
// (its registration is gone) or locked now, not for other keys, and with a multi-use token
// only while the token still admits the join (once removed, it admits no repeat either).

import type { Backend, Condition, Item, Operation } from './backend/backend.ts'
import type { JoinContext, JoinRequest } from './join.ts'
import { publicKeyFingerprint } from './key-policy.ts'
import { type NodeRecord, registryKey } from './nodes.ts'
import { hashToken, TokenRefusal, type ValidToken } from './tokens.ts'

const RECEIPTS = '/join-receipts/'

/** How long a static token's receipts last: the token never expires, its repeats must (this is far past a device's retries). */
export const STATIC_TOKEN_REPEAT_MS = 3_600_000

/** What a join registered with a token and a TLS key. */
export interface JoinReceipt {
  hostId: string
  nodename: string
  roles: string[]
  publicAddrs: string[]
  tlsKeySha256: string
  sshPublicKey: string
  singleUse: boolean
  /** The token's expiry as the join read it (epoch ms): no repeat from then on. */
  tokenExpires: number
}

/** A receipt as read before a join's transaction: absent, or the item the transaction must find unchanged. */
export interface ReceiptRead {
  key: string
  item?: Item
}

/** A repeat admitted: the host the first join registered, and what the repeat's transaction must hold. */
export interface RepeatPlan {
  record: NodeRecord
  conditions: Condition[]
}

function receiptKey(token: string, tlsKeySha256: string): string {
  return `${RECEIPTS}${hashToken(token).toString('hex')}/${tlsKeySha256}`
}

export async function readReceipt(backend: Backend, request: JoinRequest): Promise<ReceiptRead> {
  const key = receiptKey(request.token, publicKeyFingerprint(request.tlsPublicKey))
  return { key, item: await backend.get(key) }
}

/** The receipt of a join that registers `record`, for its transaction: written only while the receipt is as `read` found it. */
export function writeReceipt(read: ReceiptRead, valid: ValidToken, record: NodeRecord, now: number): { condition: Condition; operation: Operation } {
  const tokenExpires = valid.record.expires ?? now + STATIC_TOKEN_REPEAT_MS
  const receipt: JoinReceipt = {
    hostId: record.hostId,
    nodename: record.nodename,
    roles: record.roles,
    publicAddrs: record.publicAddrs ?? [],
    tlsKeySha256: record.tlsKeySha256!,
    sshPublicKey: record.sshPublicKey!,
    singleUse: valid.record.singleUse,
    tokenExpires,
  }
  return {
    condition: read.item ? { key: read.key, revision: read.item.revision } : { key: read.key, absent: true },
    operation: { op: 'put', key: read.key, value: JSON.stringify(receipt), ttlMs: Math.max(1, tokenExpires - now) },
  }
}

const sameSet = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n')

/**
 * Whether `request` repeats the join `receipt` records, to the letter, and `record` is still
 * the host that join registered, with the same keys.
 */
function repeats(receipt: JoinReceipt, record: NodeRecord | undefined, request: JoinRequest, sshPublicKey: string): record is NodeRecord {
  const tlsKeySha256 = publicKeyFingerprint(request.tlsPublicKey)
  return (
    receipt.tlsKeySha256 === tlsKeySha256 &&
    receipt.sshPublicKey === sshPublicKey &&
    receipt.nodename === request.nodename &&
    sameSet(receipt.roles, request.roles) &&
    sameSet(receipt.publicAddrs, request.publicAddrs) &&
    record !== undefined &&
    record.hostId === receipt.hostId &&
    record.tlsKeySha256 === tlsKeySha256 &&
    record.sshPublicKey === sshPublicKey &&
    record.nodename === receipt.nodename &&
    sameSet(record.roles, receipt.roles)
  )
}

/**
 * The repeat of an earlier join, when `request` is one (see above), else undefined: the caller
 * then refuses or registers as it would have. `known` is what the caller read already: the
 * receipt, and the token as it validated it. The proof of possession and the challenge are
 * the caller's to check (the request's own, over its fresh nonce).
 */
export async function planRepeat(
  context: Pick<JoinContext, 'backend' | 'tokens' | 'refusedHost' | 'clock'>,
  request: JoinRequest,
  sshPublicKey: string,
  known: { read?: ReceiptRead; valid?: ValidToken } = {},
): Promise<RepeatPlan | undefined> {
  const read = known.read ?? (await readReceipt(context.backend, request))
  if (!read.item) return undefined
  const receipt = JSON.parse(read.item.value) as JoinReceipt
  if (!((context.clock ?? Date.now)() < receipt.tokenExpires)) return undefined
  const conditions: Condition[] = [{ key: read.item.key, revision: read.item.revision }]
  // A spent single-use token admits only the repeat of the join that spent it; a multi-use one
  // must still admit this join as it would a new one, until the repeat's transaction commits.
  if (!receipt.singleUse) {
    const valid = known.valid ?? (await context.tokens.validate(request.token, request.roles, request.nodename).catch(refusedAs(undefined)))
    if (!valid) return undefined
    conditions.push(...valid.consume.conditions)
  }
  const registered = await context.backend.get(registryKey(receipt.hostId))
  const record = registered ? (JSON.parse(registered.value) as NodeRecord) : undefined
  if (!registered || !repeats(receipt, record, request, sshPublicKey)) return undefined
  // Locked now, or removed as another auth server has seen already.
  if (context.refusedHost?.(record.hostId)) return undefined
  conditions.push({ key: registered.key, revision: registered.revision })
  return { record, conditions }
}

/** A token refusal read as `value`; any other failure passes on. */
function refusedAs<T>(value: T): (error: unknown) => T {
  return (error) => {
    if (error instanceof TokenRefusal) return value
    throw error
  }
}
