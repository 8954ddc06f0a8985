// Reads the ALPN names a client offers from the raw bytes of its ClientHello (RFC 8446
// 4.1.2, RFC 7301 3.1), before any TLS state exists. The router uses it to turn away a dial
// it would decline anyway (an agent that holds a tunnel here already) for the cost of a
// parse, instead of building a TLS socket and starting a handshake for it.
//
// Only a ClientHello that arrived whole in the first record is read; anything else (split
// across reads or records, malformed) gives undefined and is left to OpenSSL.

const RECORD_HEADER = 5
const HANDSHAKE = 22
const CLIENT_HELLO = 1
const ALPN_EXTENSION = 16

/** The alert no_application_protocol (fatal), as a plaintext record: what OpenSSL sends when the ALPN callback declines. */
export const NO_APPLICATION_PROTOCOL_ALERT = Buffer.from([21, 0x03, 0x03, 0x00, 0x02, 2, 120])

/**
 * The ALPN names of the ClientHello at the start of `head`: [] when it offers none,
 * undefined when `head` does not hold a complete, well-formed ClientHello record.
 */
export function clientHelloAlpn(head: Buffer): string[] | undefined {
  if (head.length < RECORD_HEADER || head[0] !== HANDSHAKE) return undefined
  const recordEnd = RECORD_HEADER + head.readUInt16BE(3)
  if (head.length < recordEnd) return undefined
  const reader = new Reader(head.subarray(RECORD_HEADER, recordEnd))
  if (reader.u8() !== CLIENT_HELLO) return undefined
  const helloLength = reader.u24()
  if (helloLength === undefined || helloLength > reader.left) return undefined // continues in a later record
  const hello = new Reader(reader.take(helloLength)!)
  // legacy_version, random, legacy_session_id, cipher_suites, legacy_compression_methods
  if (hello.take(2 + 32) === undefined) return undefined
  if (hello.vector(1) === undefined || hello.vector(2) === undefined || hello.vector(1) === undefined) return undefined
  if (hello.left === 0) return [] // no extensions at all
  const extensions = hello.vector(2)
  if (extensions === undefined || hello.left !== 0) return undefined
  const list = new Reader(extensions)
  while (list.left > 0) {
    const type = list.u16()
    const body = list.vector(2)
    if (type === undefined || body === undefined) return undefined
    if (type === ALPN_EXTENSION) return alpnNames(body)
  }
  return []
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

  u24(): number | undefined {
    const bytes = this.take(3)
    return bytes && (bytes[0]! << 16) | bytes.readUInt16BE(1)
  }

  /** A vector whose length takes `lengthBytes` (1 or 2) bytes. */
  vector(lengthBytes: 1 | 2): Buffer | undefined {
    const length = lengthBytes === 1 ? this.u8() : this.u16()
    return length === undefined ? undefined : this.take(length)
  }
}
