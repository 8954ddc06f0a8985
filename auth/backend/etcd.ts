// The HA backend: etcd 3 through its gRPC API. Several auth servers share one etcd cluster,
// and etcd's transactions (compares on mod_revision, or create_revision == 0 for "absent")
// keep single-use tokens single-use across all of them. etcd acknowledges a write only once
// a quorum has committed it to disk, so every resolved write here is durable.
//
// Layout: each key is stored as prefix + key, byte for byte, so clusters sharing an etcd
// never see each other's keys (as long as no prefix is a prefix of another). Values are
// stored as the strings they are. Revisions are etcd's mod_revision, which increases on
// every write across the whole etcd cluster.
//
// Expiry: etcd leases last whole seconds, have a server-side minimum, and are revoked by a
// background loop some time after they run out, so a lease alone cannot say when an item
// is gone. An item with a TTL therefore carries its exact expiry in front of its value
// (see encode()), and reads and conditions treat it as absent from that instant on; its
// lease only removes it from etcd a little later. Writes whose expiries fall in the same
// second share one lease, so a burst of heartbeats costs one lease grant, not one each.

import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { noop } from 'cockatiel'
import { Etcd3, EtcdLeaseInvalidError, type ICompare, type IKeyValue, type IOptions, type IRequestOp, isRecoverableError } from 'etcd3'
import type { Backend, Condition, Item, Operation, PutOptions } from './backend.ts'

export interface EtcdTlsOptions {
  /** CA that signed the etcd servers' certificates; the system's CAs when absent. */
  caFile?: string
  /** Client certificate and key, for etcd started with --client-cert-auth. */
  certFile?: string
  keyFile?: string
}

export interface EtcdBackendOptions {
  /**
   * etcd client URLs; a bare host:port gets https:// when `tls` is given or another peer is
   * https://, else http://. A peer not on loopback needs TLS unless `insecurePlaintext`.
   */
  peers: string[]
  /** Every key lives under this prefix; a missing trailing "/" is added. */
  prefix: string
  tls?: EtcdTlsOptions
  /**
   * Allows peers that are not on loopback to be reached without TLS. Everything the auth
   * server stores (the CAs' private keys among it) then crosses the network readable.
   */
  insecurePlaintext?: boolean
}

// An expiry is written as this many decimal digits (zero-padded, so that byte order is
// numeric order) and a newline, in front of the value of an item that has a lease.
const EXPIRY_DIGITS = 15
const EXPIRY_SEPARATOR = 0x0a
// A byte above the separator: "value > digits(now) + LIVE_MARK" holds exactly when the
// encoded expiry is later than `now`.
const LIVE_MARK = '\x7f'
// Leases outlive the items on them by this much, so a lease never takes an item early.
const LEASE_GRACE_SECONDS = 1
// A hung etcd must fail a call rather than stall the auth server forever.
const CALL_TIMEOUT_MS = 10_000
const LIST_PAGE_SIZE = 1000
const LIST_ATTEMPTS = 3
// Reads are idempotent and retried on transient errors; writes never are, because a write
// whose reply was lost may have been applied, and applying a compare-and-swap twice would
// report the winner of a race as its loser.
const READ_ATTEMPTS = 3
// A txn is retried only when a condition key changed between its snapshot and its commit:
// every retry means another writer made progress.
const TXN_ATTEMPTS = 25

export class EtcdBackend implements Backend {
  readonly peers: string[]
  readonly prefix: string
  /** The peers are reached over TLS, their certificates checked against the CA and their names. */
  readonly tls: boolean
  /** Peers not on loopback that are reached without TLS, which only insecurePlaintext allows. */
  readonly plaintextPeers: string[]
  #client: Etcd3 | undefined
  readonly #prefixBytes: Buffer
  /** Leases by the epoch second by which their items are all gone. */
  #leases = new Map<number, Promise<string>>()

  /** Connects and checks that etcd answers, so a wrong address fails at startup. */
  static async open(options: EtcdBackendOptions): Promise<EtcdBackend> {
    const backend = new EtcdBackend(options)
    try {
      const start = backend.#prefixBytes
      await backend.#read((client) => client.kv.range({ key: start, range_end: rangeEnd(start), limit: 1, keys_only: true }))
    } catch (error) {
      await backend.close()
      // The error already names the peers.
      throw new Error(`cannot use ${errorMessage(error)}`, { cause: (error as Error).cause ?? error })
    }
    return backend
  }

  private constructor(options: EtcdBackendOptions) {
    if (options.peers.length === 0) throw new Error('etcd storage needs at least one peer')
    if (options.prefix === '') throw new Error('etcd storage needs a key prefix such as "/warren/"')
    this.prefix = options.prefix.endsWith('/') ? options.prefix : `${options.prefix}/`
    this.#prefixBytes = Buffer.from(this.prefix)
    // etcd3 speaks TLS to every peer once one of them is https://, so all or none are.
    this.tls = options.tls !== undefined || options.peers.some((peer) => peer.startsWith('https://'))
    this.peers = options.peers.map((peer) => withScheme(peer, this.tls, options.tls !== undefined))
    this.plaintextPeers = this.tls ? [] : this.peers.filter((peer) => !onLoopback(peer))
    // Refused before any client exists: not one byte goes to a peer in the clear.
    if (this.plaintextPeers.length > 0 && options.insecurePlaintext !== true) throw new Error(plaintextRefusal(this.plaintextPeers))
    if (this.tls && options.insecurePlaintext === true) {
      throw new Error(`etcd at ${this.peers.join(', ')} is reached over TLS, which auth_service.storage.insecure_plaintext: true contradicts: remove insecure_plaintext`)
    }
    const clientOptions: IOptions = {
      hosts: this.peers,
      credentials: options.tls && tlsCredentials(options.tls, this.peers),
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
      // A list of thousands of nodes can exceed gRPC's default 4 MiB reply limit.
      grpcOptions: { 'grpc.max_receive_message_length': -1 },
      // Retries are decided here, per kind of call (see READ_ATTEMPTS).
      faultHandling: { global: noop },
    }
    this.#client = new Etcd3(clientOptions)
  }

  async get(key: string): Promise<Item | undefined> {
    const now = Date.now()
    const response = await this.#read((client) => client.kv.range({ key: this.#key(key) }))
    return this.#liveItem(response.kvs[0], now)
  }

  async list(prefix: string): Promise<Item[]> {
    // etcd may compact away the revision a long list is pinned to; start again at a new one.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#listAtOneRevision(prefix)
      } catch (error) {
        if (attempt === LIST_ATTEMPTS || !/compacted/.test(errorMessage(error))) throw error
      }
    }
  }

  async #listAtOneRevision(prefix: string): Promise<Item[]> {
    const start = this.#key(prefix)
    const end = rangeEnd(start)
    const now = Date.now()
    // Pages share the first page's revision, so the list is one consistent snapshot.
    const items: Item[] = []
    let revision: string | undefined
    let from = start
    for (;;) {
      const page = await this.#read((client) => client.kv.range({ key: from, range_end: end, limit: LIST_PAGE_SIZE, revision }))
      revision ??= page.header.revision
      for (const kv of page.kvs) {
        const item = this.#liveItem(kv, now)
        if (item !== undefined) items.push(item)
      }
      const last = page.kvs.at(-1)
      if (!page.more || last === undefined) return items
      from = Buffer.concat([last.key, Buffer.from([0])])
    }
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<number> {
    const expires = expiryFor(Date.now(), options.ttlMs)
    return this.#withLeases([expires], async ([lease]) => {
      const response = await this.#write((client) => client.kv.put({ key: this.#key(key), value: encode(value, expires), lease }))
      return Number(response.header.revision)
    })
  }

  async create(key: string, value: string, options: PutOptions = {}): Promise<boolean> {
    return this.txn([{ key, absent: true }], [{ op: 'put', key, value, ttlMs: options.ttlMs }])
  }

  async delete(key: string): Promise<boolean> {
    const now = Date.now()
    const response = await this.#write((client) => client.kv.deleteRange({ key: this.#key(key), prev_kv: true }))
    // An expired item is removed too, but reported as absent: callers never saw it.
    return this.#liveItem(response.prev_kvs[0], now) !== undefined
  }

  /**
   * The first attempt guesses the state from the conditions alone. When etcd refuses it,
   * the same round trip returns the condition keys, and the conditions are decided on that
   * snapshot: false if they fail there, otherwise another attempt pinned to it.
   */
  async txn(conditions: Condition[], operations: Operation[]): Promise<boolean> {
    this.#open()
    const now = Date.now()
    const writes = lastOperationPerKey(operations).map((op) => (op.op === 'put' ? { ...op, expires: expiryFor(now, op.ttlMs) } : { ...op, expires: undefined }))
    return this.#withLeases(
      writes.map((write) => write.expires),
      async (leases) => {
        const success: IRequestOp[] = writes.map((write, i) =>
          write.op === 'put'
            ? { request_put: { key: this.#key(write.key), value: encode(write.value, write.expires), lease: leases[i] } }
            : { request_delete_range: { key: this.#key(write.key) } },
        )
        const failure: IRequestOp[] = conditions.map((condition) => ({ request_range: { key: this.#key(condition.key) } }))
        let compare = conditions.flatMap((condition) => this.#guessedCompares(condition, Date.now()))
        for (let attempt = 1; attempt <= TXN_ATTEMPTS; attempt++) {
          const response = await this.#write((client) => client.kv.txn({ compare, success, failure }))
          if (response.succeeded) return true
          const snapshot = response.responses.map((op) => op.response_range.kvs[0])
          const at = Date.now()
          if (!conditions.every((condition, i) => this.#holds(condition, snapshot[i], at))) return false
          compare = conditions.flatMap((condition, i) => this.#pinnedCompares(condition, snapshot[i], at))
        }
        throw new Error(`etcd txn on ${conditions.map((c) => c.key).join(', ')} lost ${TXN_ATTEMPTS} races in a row`)
      },
    )
  }

  async close(): Promise<void> {
    const client = this.#client
    this.#client = undefined
    this.#leases.clear()
    client?.close()
  }

  // Conditions as compares, before anything is known about the keys. "mod_revision == R"
  // alone would also match an item that has expired but whose lease etcd has not revoked
  // yet, so it is paired with "value > digits(now) + LIVE_MARK". That holds for a live item
  // with a lease (its value starts with its expiry) and for most items without one; when
  // it does not, the snapshot decides exactly.
  #guessedCompares(condition: Condition, now: number): ICompare[] {
    const key = this.#key(condition.key)
    if ('absent' in condition) return [{ key, target: 'Create', result: 'Equal', create_revision: 0 }]
    return [
      { key, target: 'Mod', result: 'Equal', mod_revision: condition.revision },
      { key, target: 'Value', result: 'Greater', value: liveMark(now) },
    ]
  }

  // Compares that hold only while each condition key is as the snapshot showed it (and,
  // for an item with a lease that a condition needs, still unexpired).
  #pinnedCompares(condition: Condition, kv: IKeyValue | undefined, now: number): ICompare[] {
    const key = this.#key(condition.key)
    if (kv === undefined) return [{ key, target: 'Create', result: 'Equal', create_revision: 0 }]
    const pinned: ICompare[] = [{ key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }]
    if (!('absent' in condition) && hasLease(kv)) pinned.push({ key, target: 'Value', result: 'Greater', value: liveMark(now) })
    return pinned
  }

  #holds(condition: Condition, kv: IKeyValue | undefined, now: number): boolean {
    const live = this.#liveItem(kv, now)
    if ('absent' in condition) return live === undefined
    return live !== undefined && live.revision === condition.revision
  }

  #liveItem(kv: IKeyValue | undefined, now: number): Item | undefined {
    if (kv === undefined) return undefined
    const key = kv.key.subarray(this.#prefixBytes.length).toString('utf8')
    const revision = Number(kv.mod_revision)
    if (!hasLease(kv)) return { key, value: kv.value.toString('utf8'), revision }
    const { value, expires } = decode(kv.value, key)
    return expires > now ? { key, value, revision, expires } : undefined
  }

  /**
   * Runs `work` with a lease for each expiry ('0' where there is none). A lease that etcd
   * no longer knows (revoked by hand, or etcd restored from an older snapshot) fails the
   * whole request before anything is applied, so it is safe to get fresh leases and retry.
   */
  async #withLeases<T>(expiries: (number | undefined)[], work: (leases: string[]) => Promise<T>): Promise<T> {
    const leases = () => Promise.all(expiries.map((expires) => (expires === undefined ? '0' : this.#lease(expires))))
    try {
      return await work(await leases())
    } catch (error) {
      if (!((error as Error).cause instanceof EtcdLeaseInvalidError)) throw error
      this.#leases.clear()
      return work(await leases())
    }
  }

  #lease(expires: number): Promise<string> {
    const second = Math.ceil(expires / 1000)
    const cached = this.#leases.get(second)
    if (cached !== undefined) return cached
    const now = Date.now()
    for (const past of this.#leases.keys()) if (past * 1000 <= now) this.#leases.delete(past)
    // The lease starts when etcd grants it, which is after `now`, so it ends after `second`.
    const ttl = second - Math.floor(now / 1000) + LEASE_GRACE_SECONDS
    const lease = this.#write((client) => client.leaseClient.leaseGrant({ TTL: ttl })).then((granted) => granted.ID)
    this.#leases.set(second, lease)
    // A failed grant must not be handed to later writes.
    lease.catch(() => {
      if (this.#leases.get(second) === lease) this.#leases.delete(second)
    })
    return lease
  }

  #key(key: string): Buffer {
    return Buffer.concat([this.#prefixBytes, Buffer.from(key, 'utf8')])
  }

  #open(): Etcd3 {
    if (this.#client === undefined) throw new Error(`etcd backend at ${this.peers.join(', ')} (prefix ${this.prefix}) is closed`)
    return this.#client
  }

  async #read<T>(call: (client: Etcd3) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#write(call)
      } catch (error) {
        const cause = (error as Error).cause
        if (attempt === READ_ATTEMPTS || !(cause instanceof Error) || !isRecoverableError(cause) || this.#client === undefined) throw error
        await sleep(50 * attempt)
      }
    }
  }

  async #write<T>(call: (client: Etcd3) => Promise<T>): Promise<T> {
    const client = this.#open()
    try {
      return await call(client)
    } catch (error) {
      throw new Error(`etcd at ${this.peers.join(', ')}: ${errorMessage(error)}`, { cause: error })
    }
  }
}

/** The end of the etcd range holding every key that starts with `start`. */
export function rangeEnd(start: Buffer): Buffer {
  const end = Buffer.from(start)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++
      return end.subarray(0, i + 1)
    }
  }
  // Every byte is 0xff: etcd's "to the end of the keyspace".
  return Buffer.from([0])
}

/** An item with a TTL carries its expiry first: "001767225600000\n" (epoch ms), then the value. */
export function encode(value: string, expires: number | undefined): Buffer {
  if (expires === undefined) return Buffer.from(value, 'utf8')
  return Buffer.concat([Buffer.from(expiryDigits(expires) + '\n', 'ascii'), Buffer.from(value, 'utf8')])
}

export function decode(stored: Buffer, key: string): { value: string; expires: number } {
  const digits = stored.subarray(0, EXPIRY_DIGITS).toString('ascii')
  if (stored[EXPIRY_DIGITS] !== EXPIRY_SEPARATOR || !/^\d+$/.test(digits)) {
    throw new Error(`etcd key ${JSON.stringify(key)} has a lease but no expiry in front of its value; was it written by something else?`)
  }
  return { value: stored.subarray(EXPIRY_DIGITS + 1).toString('utf8'), expires: Number(digits) }
}

function expiryDigits(epochMs: number): string {
  return String(epochMs).padStart(EXPIRY_DIGITS, '0')
}

function liveMark(now: number): Buffer {
  return Buffer.from(expiryDigits(now) + LIVE_MARK, 'ascii')
}

function hasLease(kv: IKeyValue): boolean {
  return kv.lease !== '0' && kv.lease !== ''
}

function expiryFor(now: number, ttlMs: number | undefined): number | undefined {
  if (ttlMs === undefined) return undefined
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`ttlMs must be a positive number of milliseconds, got ${ttlMs}`)
  }
  return Math.ceil(now + ttlMs)
}

// etcd refuses a txn that touches one key twice; applying the operations in order leaves
// only the last one for each key in effect, so that is the one sent.
function lastOperationPerKey(operations: Operation[]): Operation[] {
  const last = new Map<string, Operation>()
  for (const op of operations) {
    last.delete(op.key)
    last.set(op.key, op)
  }
  return [...last.values()]
}

function withScheme(peer: string, secure: boolean, tlsConfigured: boolean): string {
  if (/^https?:\/\//.test(peer)) {
    if (secure && peer.startsWith('http://')) {
      throw new Error(
        tlsConfigured
          ? `etcd peer ${peer} uses http:// but TLS is configured`
          : `etcd peer ${peer} uses http:// but another peer uses https://: the client speaks TLS to all of them or to none`,
      )
    }
    return peer
  }
  return `${secure ? 'https' : 'http'}://${peer}`
}

/** The peer's host is 127.0.0.0/8, ::1 (or an IPv4-mapped loopback address) or localhost. */
export function onLoopback(peer: string): boolean {
  let host: string
  try {
    host = new URL(peer).hostname.replace(/^\[(.*)\]$/, '$1')
  } catch {
    return false
  }
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  // URL writes IPv6 in its shortest form, ::ffff:127.0.0.1 as ::ffff:7f00:1.
  return host === '::1' || /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(host)
}

function plaintextRefusal(peers: string[]): string {
  const named = peers.length === 1 ? `etcd peer ${peers[0]} is` : `etcd peers ${peers.join(', ')} are`
  return (
    `${named} not on loopback and would be reached without TLS: everything the auth server stores there, the CAs' private keys among it, ` +
    `would cross the network readable. Give auth_service.storage.tls with ca_file (the CA of etcd's server certificates), ` +
    `and cert_file and key_file for etcd's client-certificate auth (--client-cert-auth); ` +
    `or, to send it all in the clear anyway, set auth_service.storage.insecure_plaintext: true`
  )
}

function tlsCredentials(tls: EtcdTlsOptions, peers: string[]): IOptions['credentials'] {
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw new Error('etcd TLS needs both a certificate file and a key file, or neither')
  }
  const read = (what: string, path: string | undefined): Buffer | undefined => {
    if (path === undefined) return undefined
    try {
      return readFileSync(path)
    } catch (error) {
      throw new Error(`cannot read the etcd TLS ${what} ${path} (for ${peers.join(', ')}): ${errorMessage(error)}`, { cause: error })
    }
  }
  // gRPC checks each peer's certificate against its host (Node's checkServerIdentity), as long
  // as no grpc.ssl_target_name_override is set, so a certificate for another name is refused.
  return {
    // Without a CA file gRPC trusts the system's CAs; its type insists on a Buffer.
    rootCertificate: read('CA file', tls.caFile) as Buffer,
    certChain: read('certificate file', tls.certFile),
    privateKey: read('key file', tls.keyFile),
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
