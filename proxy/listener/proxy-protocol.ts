// The PROXY protocol (haproxy's doc/proxy-protocol.txt), versions 1 and 2: the header a
// load balancer puts in front of a relayed TCP stream to name the client it relays for.
// Parsing is incremental because TCP may deliver the header in pieces; every malformed
// header is refused with a named error, since the spec requires dropping the connection.

import { isIPv4, isIPv6 } from 'node:net'
import { formatIPv4, formatIPv6, ipToBytes } from '../../shared/ip-bytes.ts'

export interface ProxyHeader {
  version: 1 | 2
  /**
   * `local`: the balancer opened the connection itself (a health check), so the real
   * endpoints apply. `proxy`: relayed for a client; the addresses are present when the
   * header names a TCP connection over IPv4 or IPv6 (v1 UNKNOWN, v2 UNSPEC, UDP and UNIX
   * carry none we can use, and the spec says to fall back to the real endpoints).
   */
  command: 'proxy' | 'local'
  sourceAddress?: string
  sourcePort?: number
  destinationAddress?: string
  destinationPort?: number
}

export interface ProxyAddresses {
  sourceAddress: string
  sourcePort: number
  destinationAddress: string
  destinationPort: number
}

/** "PROXY UNKNOWN" with two IPv6 addresses and ports, CRLF included (spec 2.1). */
export const PROXY_V1_MAX_LENGTH = 107

export const PROXY_V1_SIGNATURE = Buffer.from('PROXY', 'latin1')

export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

/** Signature, version/command, family/transport and the 16-bit length of what follows. */
export const PROXY_V2_FIXED_LENGTH = 16

/**
 * Largest v2 header we accept, TLVs included. The format allows 64 KiB; addresses need at
 * most 232 bytes and balancers add a few small TLVs, so anything near this is not a header
 * we want to buffer.
 */
export const PROXY_V2_MAX_LENGTH = 16 * 1024

const messages = {
  ERR_PROXY_V1_TOO_LONG: `PROXY v1 header has no CRLF within ${PROXY_V1_MAX_LENGTH} bytes`,
  ERR_PROXY_V1_BARE_CR: 'PROXY v1 header has a CR not followed by LF',
  ERR_PROXY_V1_BARE_LF: 'PROXY v1 header ends in LF without CR',
  ERR_PROXY_V1_SYNTAX: 'malformed PROXY v1 header',
  ERR_PROXY_V1_FAMILY: 'PROXY v1 header names an unknown protocol (want TCP4, TCP6 or UNKNOWN)',
  ERR_PROXY_V1_ADDRESS: 'PROXY v1 header has an invalid address',
  ERR_PROXY_V1_PORT: 'PROXY v1 header has an invalid port',
  ERR_PROXY_V2_VERSION: 'PROXY v2 header has an unsupported version',
  ERR_PROXY_V2_COMMAND: 'PROXY v2 header has an unknown command',
  ERR_PROXY_V2_FAMILY: 'PROXY v2 header has an unknown address family or transport',
  ERR_PROXY_V2_ADDRESS_LENGTH: 'PROXY v2 header is too short for its addresses',
  ERR_PROXY_V2_TOO_LONG: `PROXY v2 header longer than ${PROXY_V2_MAX_LENGTH} bytes`,
  ERR_PROXY_V2_TLV: 'PROXY v2 header has a malformed TLV',
} as const

export type ProxyProtocolErrorCode = keyof typeof messages

export class ProxyProtocolError extends Error {
  readonly code: ProxyProtocolErrorCode
  constructor(code: ProxyProtocolErrorCode, detail?: string) {
    super(detail === undefined ? messages[code] : `${messages[code]}: ${detail}`)
    this.name = 'ProxyProtocolError'
    this.code = code
  }
}

/**
 * Which PROXY header `data` starts with: 1 or 2, 0 when it cannot start one, undefined
 * while it is too short to tell (a prefix of a signature, including no bytes at all).
 */
export function proxyHeaderVersion(data: Buffer): 0 | 1 | 2 | undefined {
  for (const [signature, version] of [
    [PROXY_V1_SIGNATURE, 1],
    [PROXY_V2_SIGNATURE, 2],
  ] as const) {
    const n = Math.min(data.length, signature.length)
    if (data.compare(signature, 0, n, 0, n) !== 0) continue
    return n === signature.length ? version : undefined
  }
  return 0
}

export type ProxyHeaderScan =
  /** The bytes do not start a PROXY header. */
  | { status: 'absent' }
  /**
   * A header may be on its way (with `version`, is on its way; with `length`, is that many
   * bytes long in all): read more.
   */
  | { status: 'partial'; version?: 1 | 2; length?: number }
  /** A complete header of `length` bytes; what follows belongs to the relayed stream. */
  | { status: 'complete'; header: ProxyHeader; length: number }

/**
 * Looks for a PROXY header at the start of `data`, which holds everything read so far.
 * Cheap to call again as bytes arrive: a partial header is only measured, never parsed.
 * Throws a ProxyProtocolError as soon as the bytes cannot be a valid header.
 */
export function scanProxyHeader(data: Buffer): ProxyHeaderScan {
  const version = proxyHeaderVersion(data)
  if (version === 0) return { status: 'absent' }
  if (version === undefined) return { status: 'partial' }
  return version === 1 ? scanV1(data) : scanV2(data)
}

/** Feeds chunks until the header, if any, is complete; then hands back the bytes after it. */
export class ProxyHeaderParser {
  #chunks: Buffer[] = []
  #buffered = 0
  /** Bytes needed before scanning again is worth it (a v2 header announces its length). */
  #need = 1
  #version: 1 | 2 | undefined
  #done = false

  /**
   * Until a header is complete or known to be absent: `done: false`, with `version` once
   * the signature has been seen. Then `done: true`, `header` (absent when the stream has
   * none) and `rest`, every byte after it. Throws a ProxyProtocolError.
   */
  push(chunk: Buffer): { done: false; version?: 1 | 2 } | { done: true; header?: ProxyHeader; rest: Buffer } {
    if (this.#done) return { done: true, rest: chunk }
    this.#chunks.push(chunk)
    this.#buffered += chunk.length
    // A v2 header dripping in byte by byte is joined once, not once per byte.
    if (this.#buffered < this.#need) return this.#waiting()
    const buffered = this.#chunks.length === 1 ? chunk : Buffer.concat(this.#chunks)
    this.#chunks = [buffered]
    const scan = scanProxyHeader(buffered)
    if (scan.status === 'partial') {
      this.#need = scan.length ?? buffered.length + 1
      this.#version = scan.version
      return this.#waiting()
    }
    this.#done = true
    this.#chunks = []
    if (scan.status === 'absent') return { done: true, rest: buffered }
    return { done: true, header: scan.header, rest: buffered.subarray(scan.length) }
  }

  #waiting(): { done: false; version?: 1 | 2 } {
    return this.#version === undefined ? { done: false } : { done: false, version: this.#version }
  }
}

// Version 1: one line of ASCII, "PROXY TCP4 src dst sport dport\r\n".

const CR = 0x0d
const LF = 0x0a
const IPV4_TEXT = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/
const PORT_TEXT = /^(0|[1-9]\d{0,4})$/

function scanV1(data: Buffer): ProxyHeaderScan {
  const window = data.subarray(0, PROXY_V1_MAX_LENGTH)
  const lf = window.indexOf(LF)
  // The only CR allowed is the one right before the first LF. Faults are reported in the
  // order of the bytes, so the verdict does not depend on how the header was cut.
  const cr = (lf === -1 ? window : window.subarray(0, lf)).indexOf(CR)
  if (cr !== -1 && (lf === -1 ? cr + 1 < window.length : cr < lf - 1)) throw new ProxyProtocolError('ERR_PROXY_V1_BARE_CR')
  if (lf === -1) {
    if (data.length >= PROXY_V1_MAX_LENGTH) throw new ProxyProtocolError('ERR_PROXY_V1_TOO_LONG')
    return { status: 'partial', version: 1 }
  }
  if (data[lf - 1] !== CR) throw new ProxyProtocolError('ERR_PROXY_V1_BARE_LF')
  return { status: 'complete', header: parseV1Line(data.toString('latin1', 0, lf - 1)), length: lf + 1 }
}

function parseV1Line(line: string): ProxyHeader {
  const fields = line.split(' ')
  if (fields[0] !== 'PROXY' || fields.length < 2) throw new ProxyProtocolError('ERR_PROXY_V1_SYNTAX', quote(line))
  const family = fields[1]
  // For UNKNOWN the spec tells receivers to ignore the rest of the line.
  if (family === 'UNKNOWN') return { version: 1, command: 'proxy' }
  if (family !== 'TCP4' && family !== 'TCP6') throw new ProxyProtocolError('ERR_PROXY_V1_FAMILY', quote(family ?? ''))
  // Exactly one space between fields: a doubled or trailing space makes an empty field.
  if (fields.length !== 6) throw new ProxyProtocolError('ERR_PROXY_V1_SYNTAX', `want 6 fields separated by single spaces: ${quote(line)}`)
  const [, , source = '', destination = '', sourcePort = '', destinationPort = ''] = fields
  return {
    version: 1,
    command: 'proxy',
    sourceAddress: v1Address(source, family),
    destinationAddress: v1Address(destination, family),
    sourcePort: v1Port(sourcePort),
    destinationPort: v1Port(destinationPort),
  }
}

function v1Address(text: string, family: 'TCP4' | 'TCP6'): string {
  if (family === 'TCP4') {
    // No leading zeros: they would read as octal to some parsers.
    if (!IPV4_TEXT.test(text)) throw new ProxyProtocolError('ERR_PROXY_V1_ADDRESS', `${quote(text)} is not an IPv4 address`)
    return text
  }
  if (!isIPv6(text) || text.includes('%')) throw new ProxyProtocolError('ERR_PROXY_V1_ADDRESS', `${quote(text)} is not an IPv6 address`)
  return formatIPv6(ipToBytes(text))
}

function v1Port(text: string): number {
  const port = PORT_TEXT.test(text) ? Number(text) : NaN
  if (!(port <= 65535)) throw new ProxyProtocolError('ERR_PROXY_V1_PORT', quote(text))
  return port
}

function quote(text: string): string {
  return JSON.stringify(text)
}

// Version 2: binary. Signature, then version << 4 | command, family << 4 | transport, the
// length of the rest, the addresses for the family, and TLVs up to that length.

const COMMAND_LOCAL = 0x0
const COMMAND_PROXY = 0x1
const FAMILY = { UNSPEC: 0x0, INET: 0x1, INET6: 0x2, UNIX: 0x3 } as const
const TRANSPORT = { UNSPEC: 0x0, STREAM: 0x1, DGRAM: 0x2 } as const
const ADDRESS_BLOCK_LENGTH: Record<number, number> = { [FAMILY.INET]: 12, [FAMILY.INET6]: 36, [FAMILY.UNIX]: 216 }

function scanV2(data: Buffer): ProxyHeaderScan {
  if (data.length < PROXY_V2_FIXED_LENGTH) return { status: 'partial', version: 2 }
  const versionCommand = data[12]!
  if (versionCommand >> 4 !== 2) throw new ProxyProtocolError('ERR_PROXY_V2_VERSION', `${versionCommand >> 4}`)
  const command = versionCommand & 0x0f
  if (command !== COMMAND_LOCAL && command !== COMMAND_PROXY) throw new ProxyProtocolError('ERR_PROXY_V2_COMMAND', `${command}`)
  const length = PROXY_V2_FIXED_LENGTH + data.readUInt16BE(14)
  // Refuse before buffering: the length field alone tells us the header is too big.
  if (length > PROXY_V2_MAX_LENGTH) throw new ProxyProtocolError('ERR_PROXY_V2_TOO_LONG', `${length} bytes`)

  // LOCAL: the spec says to ignore the family and skip whatever the length covers.
  if (command === COMMAND_LOCAL) {
    if (data.length < length) return { status: 'partial', version: 2, length }
    return { status: 'complete', header: { version: 2, command: 'local' }, length }
  }

  const family = data[13]! >> 4
  const transport = data[13]! & 0x0f
  if (family > FAMILY.UNIX || transport > TRANSPORT.DGRAM) {
    throw new ProxyProtocolError('ERR_PROXY_V2_FAMILY', `0x${data[13]!.toString(16).padStart(2, '0')}`)
  }
  const addressLength = family === FAMILY.UNSPEC || transport === TRANSPORT.UNSPEC ? 0 : ADDRESS_BLOCK_LENGTH[family]!
  if (length - PROXY_V2_FIXED_LENGTH < addressLength) {
    throw new ProxyProtocolError('ERR_PROXY_V2_ADDRESS_LENGTH', `${length - PROXY_V2_FIXED_LENGTH} bytes, want ${addressLength}`)
  }
  if (data.length < length) return { status: 'partial', version: 2, length }

  checkTlvs(data.subarray(PROXY_V2_FIXED_LENGTH + addressLength, length))
  const header: ProxyHeader = { version: 2, command: 'proxy' }
  if (transport === TRANSPORT.STREAM && (family === FAMILY.INET || family === FAMILY.INET6)) {
    const size = family === FAMILY.INET ? 4 : 16
    const format = family === FAMILY.INET ? formatIPv4 : formatIPv6
    let at = PROXY_V2_FIXED_LENGTH
    header.sourceAddress = format(data.subarray(at, (at += size)))
    header.destinationAddress = format(data.subarray(at, (at += size)))
    header.sourcePort = data.readUInt16BE(at)
    header.destinationPort = data.readUInt16BE(at + 2)
  }
  return { status: 'complete', header, length }
}

/** TLVs are skipped, but their framing must fill the rest of the header exactly. */
function checkTlvs(tlvs: Buffer): void {
  let at = 0
  while (at < tlvs.length) {
    if (tlvs.length - at < 3) throw new ProxyProtocolError('ERR_PROXY_V2_TLV', `${tlvs.length - at} stray bytes at the end`)
    const end = at + 3 + tlvs.readUInt16BE(at + 1)
    if (end > tlvs.length) throw new ProxyProtocolError('ERR_PROXY_V2_TLV', `type 0x${tlvs[at]!.toString(16)} overruns the header`)
    at = end
  }
}

// Encoders: for tests, and for a proxy that relays to another proxy.

/** A v1 line for these addresses, or "PROXY UNKNOWN" without them. */
export function encodeProxyV1(addresses?: ProxyAddresses): Buffer {
  if (!addresses) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1')
  const family = addressFamily(addresses) === 4 ? 'TCP4' : 'TCP6'
  const { sourceAddress, destinationAddress, sourcePort, destinationPort } = addresses
  return Buffer.from(`PROXY ${family} ${sourceAddress} ${destinationAddress} ${sourcePort} ${destinationPort}\r\n`, 'latin1')
}

export interface Tlv {
  type: number
  value: Buffer
}

/** A v2 header: PROXY over TCP for these addresses, or LOCAL without them. */
export function encodeProxyV2(addresses?: ProxyAddresses, tlvs: Tlv[] = []): Buffer {
  const tlvBytes = Buffer.concat(
    tlvs.flatMap(({ type, value }) => {
      const head = Buffer.alloc(3)
      head[0] = type
      head.writeUInt16BE(value.length, 1)
      return [head, value]
    }),
  )
  let addressBlock = Buffer.alloc(0)
  let familyTransport = (FAMILY.UNSPEC << 4) | TRANSPORT.UNSPEC
  if (addresses) {
    const family = addressFamily(addresses)
    familyTransport = ((family === 4 ? FAMILY.INET : FAMILY.INET6) << 4) | TRANSPORT.STREAM
    const ports = Buffer.alloc(4)
    ports.writeUInt16BE(addresses.sourcePort, 0)
    ports.writeUInt16BE(addresses.destinationPort, 2)
    addressBlock = Buffer.concat([ipToBytes(addresses.sourceAddress), ipToBytes(addresses.destinationAddress), ports])
  }
  const fixed = Buffer.alloc(PROXY_V2_FIXED_LENGTH)
  PROXY_V2_SIGNATURE.copy(fixed)
  fixed[12] = (2 << 4) | (addresses ? COMMAND_PROXY : COMMAND_LOCAL)
  fixed[13] = familyTransport
  fixed.writeUInt16BE(addressBlock.length + tlvBytes.length, 14)
  return Buffer.concat([fixed, addressBlock, tlvBytes])
}

function addressFamily({ sourceAddress, destinationAddress }: ProxyAddresses): 4 | 6 {
  if (isIPv4(sourceAddress) && isIPv4(destinationAddress)) return 4
  if (isIPv6(sourceAddress) && isIPv6(destinationAddress)) return 6
  throw new TypeError(`PROXY header addresses must be two IPv4 or two IPv6 addresses: ${sourceAddress}, ${destinationAddress}`)
}
