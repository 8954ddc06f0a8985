// Minimal DER (X.690) encoding for the few ASN.1 shapes Warren writes: certificates and
// their extensions. Building bytes directly keeps certificate issuance far cheaper than a
// general ASN.1 library; the signature itself is left to node:crypto.

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const

export function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.of(length)
  const bytes: number[] = []
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256)
  return Buffer.of(0x80 | bytes.length, ...bytes)
}

/** One tag-length-value element; `contents` are concatenated. */
export function tlv(tag: number, ...contents: Buffer[]): Buffer {
  let length = 0
  for (const part of contents) length += part.length
  // One allocation per element: certificates are built from dozens of small elements.
  const lengthOctets = length < 0x80 ? 0 : length < 0x100 ? 1 : length < 0x10000 ? 2 : length < 0x1000000 ? 3 : 4
  const out = Buffer.allocUnsafe(2 + lengthOctets + length)
  out[0] = tag
  if (lengthOctets === 0) out[1] = length
  else {
    out[1] = 0x80 | lengthOctets
    out.writeUIntBE(length, 2, lengthOctets)
  }
  let offset = 2 + lengthOctets
  for (const part of contents) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

export function sequence(...items: Buffer[]): Buffer {
  return tlv(TAG.SEQUENCE, ...items)
}

/** A SET OF: DER requires the encoded members in ascending byte order. */
export function set(...items: Buffer[]): Buffer {
  return tlv(TAG.SET, ...[...items].sort(Buffer.compare))
}

/** A non-negative INTEGER from big-endian magnitude bytes (or a small number). */
export function integer(value: Buffer | number): Buffer {
  let bytes: Buffer
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`cannot encode ${value} as a DER INTEGER`)
    const hex = value.toString(16)
    bytes = Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex')
  } else {
    bytes = value
  }
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  const minimal = bytes.length === 0 ? Buffer.of(0) : bytes.subarray(start)
  // The high bit is the sign bit, so a positive value starting with it needs a 0x00 prefix.
  return minimal[0] & 0x80 ? tlv(TAG.INTEGER, Buffer.of(0), minimal) : tlv(TAG.INTEGER, minimal)
}

/** An OBJECT IDENTIFIER from its dotted form, e.g. "2.5.4.3"; arcs of any size (2.25.<UUID>). */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((arc) => {
    if (!/^\d+$/.test(arc)) throw new Error(`invalid OID ${dotted}`)
    return BigInt(arc)
  })
  if (arcs.length < 2 || arcs[0] > 2n || (arcs[0] < 2n && arcs[1] > 39n)) throw new Error(`invalid OID ${dotted}`)
  const bytes: number[] = []
  for (const arc of [arcs[0] * 40n + arcs[1], ...arcs.slice(2)]) {
    // Base 128, most significant group first, continuation bit on all but the last.
    const groups = [Number(arc % 128n)]
    for (let rest = arc / 128n; rest > 0n; rest /= 128n) groups.unshift(0x80 | Number(rest % 128n))
    bytes.push(...groups)
  }
  return tlv(TAG.OID, Buffer.from(bytes))
}

export function utf8String(text: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(text, 'utf8'))
}

export function printableString(text: string): Buffer {
  if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(text)) throw new Error(`not a PrintableString: ${JSON.stringify(text)}`)
  return tlv(TAG.PRINTABLE_STRING, Buffer.from(text, 'latin1'))
}

export function ia5String(text: string): Buffer {
  if (!/^[\x00-\x7f]*$/.test(text)) throw new Error(`not an IA5String: ${JSON.stringify(text)}`)
  return tlv(TAG.IA5_STRING, Buffer.from(text, 'latin1'))
}

export function bitString(contents: Buffer, unusedBits = 0): Buffer {
  return tlv(TAG.BIT_STRING, Buffer.of(unusedBits), contents)
}

/** A named-bit BIT STRING (bit 0 is the most significant); DER drops trailing zero bits. */
export function namedBits(bits: number[]): Buffer {
  if (bits.length === 0) return bitString(Buffer.alloc(0))
  const highest = Math.max(...bits)
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1)
  for (const bit of bits) bytes[bit >> 3] |= 0x80 >> (bit & 7)
  return bitString(bytes, 7 - (highest & 7))
}

export function octetString(contents: Buffer): Buffer {
  return tlv(TAG.OCTET_STRING, contents)
}

export function boolean(value: boolean): Buffer {
  return Buffer.of(TAG.BOOLEAN, 1, value ? 0xff : 0x00)
}

export const NULL = Buffer.of(TAG.NULL, 0)

/** X.509 time: UTCTime for 1950-2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5). */
export function time(date: Date): Buffer {
  const year = date.getUTCFullYear()
  if (!Number.isFinite(year) || year < 0 || year > 9999) throw new RangeError(`cannot encode date ${date}`)
  const two = (n: number) => String(n).padStart(2, '0')
  const rest = two(date.getUTCMonth() + 1) + two(date.getUTCDate()) + two(date.getUTCHours()) + two(date.getUTCMinutes()) + two(date.getUTCSeconds()) + 'Z'
  if (year >= 1950 && year <= 2049) return tlv(TAG.UTC_TIME, Buffer.from(two(year % 100) + rest, 'latin1'))
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(String(year).padStart(4, '0') + rest, 'latin1'))
}

/** [n] EXPLICIT: the inner element wrapped whole in a constructed context-specific tag. */
export function explicit(tagNumber: number, inner: Buffer): Buffer {
  return tlv(0xa0 | contextTag(tagNumber), inner)
}

/** [n] IMPLICIT: the contents of the underlying type under a context-specific tag. */
export function implicit(tagNumber: number, contents: Buffer, constructed = false): Buffer {
  return tlv((constructed ? 0xa0 : 0x80) | contextTag(tagNumber), contents)
}

function contextTag(tagNumber: number): number {
  if (!Number.isInteger(tagNumber) || tagNumber < 0 || tagNumber > 30) throw new RangeError(`unsupported tag number ${tagNumber}`)
  return tagNumber
}

export interface Element {
  tag: number
  contents: Buffer
  /** Offset just past this element in the buffer it was read from. */
  end: number
}

/** Reads one element (single-byte tag, definite length) at `offset`, bounds-checked. */
export function readElement(der: Buffer, offset = 0): Element {
  if (offset + 2 > der.length) throw new Error('truncated DER element')
  const tag = der[offset]
  let length = der[offset + 1]
  let start = offset + 2
  if (length & 0x80) {
    const count = length & 0x7f
    if (count === 0 || count > 4 || start + count > der.length) throw new Error('unsupported DER length')
    length = 0
    for (let i = 0; i < count; i++) length = length * 256 + der[start + i]
    start += count
  }
  if (start + length > der.length) throw new Error('truncated DER element')
  return { tag, contents: der.subarray(start, start + length), end: start + length }
}
