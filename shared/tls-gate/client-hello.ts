// Reads a client's ClientHello from the raw bytes of its connection (RFC 8446 4.1.2,
// 5.1), before any TLS state exists: whether it has arrived whole (a server gives a
// connection a handshake slot only then), the ALPN names it offers (RFC 7301 3.1) and
// whether it offers a session ticket to resume with.
//
// Completeness depends only on the record framing and the handshake message's length, which
// every TLS stack gets right; the extensions are read leniently: a ClientHello we cannot
// read further is still complete, offers no ALPN names we know of and resumes nothing, and
// OpenSSL decides what it is worth.

const RECORD_HEADER = 5
/** TLSPlaintext.length must not exceed 2^14 (RFC 8446 section 5.1). */
const MAX_RECORD = 16_384
const HANDSHAKE = 22
const CLIENT_HELLO = 1
const HANDSHAKE_HEADER = 4
const SESSION_TICKET_EXTENSION = 35
const PRE_SHARED_KEY_EXTENSION = 41
const ALPN_EXTENSION = 16
/**
 * Records a ClientHello may span. Clients send it in one record (two for the largest); one
 * split into thousands of tiny records would be scanned again at each arrival (gate.ts).
 */
export const MAX_HELLO_RECORDS = 16

export interface ClientHelloInfo {
  /** The ALPN names offered, in order; [] without the extension; undefined if unreadable. */
  alpn: string[] | undefined
  /** It offers a session ticket: pre_shared_key (TLS 1.3) or a non-empty session_ticket (TLS 1.2). */
  resuming: boolean
}

export type HelloScan = { state: 'incomplete' } | { state: 'invalid'; reason: string } | ({ state: 'complete' } & ClientHelloInfo)

/**
 * What `head`, the first bytes a client sent, holds: a whole ClientHello (possibly over
 * several records), not yet, or something no ClientHello can become.
 */
export function scanClientHello(head: Buffer, maxHelloBytes = 16 * 1024): HelloScan {
  const fragments: Buffer[] = []
  let gathered = 0
  let needed: number | undefined
  for (let at = 0; at + RECORD_HEADER <= head.length; ) {
    if (fragments.length === MAX_HELLO_RECORDS) return { state: 'invalid', reason: `a ClientHello split into more than ${MAX_HELLO_RECORDS} records` }
    if (head[at] !== HANDSHAKE) return { state: 'invalid', reason: `a record of type ${head[at]} before the ClientHello was complete` }
    if (head[at + 1] !== 3) return { state: 'invalid', reason: 'not a TLS record' }
    const length = head.readUInt16BE(at + 3)
    if (length === 0 || length > MAX_RECORD) return { state: 'invalid', reason: `a record of ${length} bytes` }
    const fragment = head.subarray(at + RECORD_HEADER, at + RECORD_HEADER + length)
    fragments.push(fragment)
    gathered += fragment.length
    if (needed === undefined && gathered >= HANDSHAKE_HEADER) {
      const start = Buffer.concat(fragments)
      if (start[0] !== CLIENT_HELLO) return { state: 'invalid', reason: `handshake message ${start[0]} instead of a ClientHello` }
      const helloLength = start.readUIntBE(1, 3)
      if (helloLength > maxHelloBytes) return { state: 'invalid', reason: `a ClientHello of ${helloLength} bytes (at most ${maxHelloBytes})` }
      needed = HANDSHAKE_HEADER + helloLength
    }
    if (needed !== undefined && gathered >= needed) {
      const message = Buffer.concat(fragments).subarray(HANDSHAKE_HEADER, needed)
      return { state: 'complete', ...readHello(message) }
    }
    at += RECORD_HEADER + length
  }
  return { state: 'incomplete' }
}

/** The ALPN names of a whole ClientHello at the start of `head`; undefined until it is whole or if unreadable. */
export function clientHelloAlpn(head: Buffer): string[] | undefined {
  const scan = scanClientHello(head)
  return scan.state === 'complete' ? scan.alpn : undefined
}

function readHello(message: Buffer): ClientHelloInfo {
  const unreadable: ClientHelloInfo = { alpn: undefined, resuming: false }
  const hello = new Reader(message)
  // legacy_version, random, legacy_session_id, cipher_suites, legacy_compression_methods
  if (hello.take(2 + 32) === undefined) return unreadable
  if (hello.vector(1) === undefined || hello.vector(2) === undefined || hello.vector(1) === undefined) return unreadable
  if (hello.left === 0) return { alpn: [], resuming: false } // no extensions at all
  const extensions = hello.vector(2)
  if (extensions === undefined || hello.left !== 0) return unreadable
  const list = new Reader(extensions)
  let alpn: string[] | undefined = []
  let resuming = false
  while (list.left > 0) {
    const type = list.u16()
    const body = list.vector(2)
    if (type === undefined || body === undefined) return unreadable
    if (type === ALPN_EXTENSION) alpn = alpnNames(body)
    else if (type === PRE_SHARED_KEY_EXTENSION || (type === SESSION_TICKET_EXTENSION && body.length > 0)) resuming = true
  }
  return { alpn, resuming }
}

function alpnNames(body: Buffer): string[] | undefined {
  const outer = new Reader(body)
  const names = outer.vector(2)
  if (names === undefined || outer.left !== 0) return undefined
  const reader = new Reader(names)
  const result: string[] = []
  while (reader.left > 0) {
    const name = reader.vector(1)
    if (name === undefined || name.length === 0) return undefined
    result.push(name.toString('latin1'))
  }
  return result.length > 0 ? result : undefined
}

/** Big-endian fields and length-prefixed vectors; every read gives undefined past the end. */
class Reader {
  readonly #buf: Buffer
  #at = 0

  constructor(buf: Buffer) {
    this.#buf = buf
  }

  get left(): number {
    return this.#buf.length - this.#at
  }

  take(n: number): Buffer | undefined {
    if (n > this.left) return undefined
    const piece = this.#buf.subarray(this.#at, this.#at + n)
    this.#at += n
    return piece
  }

  u8(): number | undefined {
    return this.take(1)?.readUInt8(0)
  }

  u16(): number | undefined {
    return this.take(2)?.readUInt16BE(0)
  }

  /** A vector whose length takes `lengthBytes` (1 or 2) bytes. */
  vector(lengthBytes: 1 | 2): Buffer | undefined {
    const length = lengthBytes === 1 ? this.u8() : this.u16()
    return length === undefined ? undefined : this.take(length)
  }
}
