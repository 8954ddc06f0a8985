import t from 'tap'
import {
  encodeProxyV1,
  encodeProxyV2,
  PROXY_V2_MAX_LENGTH,
  PROXY_V2_SIGNATURE,
  type ProxyHeader,
  ProxyHeaderParser,
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
  proxyHeaderVersion,
  scanProxyHeader,
} from './proxy-protocol.ts'

const PAYLOAD = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')

/** Fixed header of a v2 PROXY command with the given family byte and length field. */
function v2(familyTransport: number, body: Buffer, versionCommand = 0x21): Buffer {
  const fixed = Buffer.alloc(16)
  PROXY_V2_SIGNATURE.copy(fixed)
  fixed[12] = versionCommand
  fixed[13] = familyTransport
  fixed.writeUInt16BE(body.length, 14)
  return Buffer.concat([fixed, body])
}

function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3)
  head[0] = type
  head.writeUInt16BE(value.length, 1)
  return Buffer.concat([head, value])
}

const TCP4 = { sourceAddress: '192.168.0.1', sourcePort: 56324, destinationAddress: '192.168.0.11', destinationPort: 443 }
const TCP6 = { sourceAddress: '2001:db8::1', sourcePort: 65535, destinationAddress: 'fd00:1:2:3:4:5:6:7', destinationPort: 0 }

interface ValidCase {
  name: string
  bytes: Buffer
  header: ProxyHeader
}

const valid: ValidCase[] = [
  { name: 'v1 TCP4', bytes: Buffer.from('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n'), header: { version: 1, command: 'proxy', ...TCP4 } },
  {
    name: 'v1 TCP6, upper case and uncompressed text normalised',
    bytes: Buffer.from('PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 fd00:1:2:3:4:5:6:7 65535 0\r\n'),
    header: { version: 1, command: 'proxy', ...TCP6 },
  },
  {
    name: 'v1 TCP6 IPv4-mapped',
    bytes: Buffer.from('PROXY TCP6 ::ffff:10.1.2.3 ::1 1 2\r\n'),
    header: { version: 1, command: 'proxy', sourceAddress: '::ffff:10.1.2.3', destinationAddress: '::1', sourcePort: 1, destinationPort: 2 },
  },
  {
    name: 'v1 worst case: 255s and ports at the limit',
    bytes: Buffer.from('PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n'),
    header: { version: 1, command: 'proxy', sourceAddress: '255.255.255.255', destinationAddress: '0.0.0.0', sourcePort: 65535, destinationPort: 0 },
  },
  { name: 'v1 UNKNOWN short form', bytes: Buffer.from('PROXY UNKNOWN\r\n'), header: { version: 1, command: 'proxy' } },
  {
    name: 'v1 UNKNOWN long form, 107 bytes, rest ignored',
    bytes: Buffer.from(`PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`),
    header: { version: 1, command: 'proxy' },
  },
  { name: 'v2 TCP4', bytes: encodeProxyV2(TCP4), header: { version: 2, command: 'proxy', ...TCP4 } },
  { name: 'v2 TCP6', bytes: encodeProxyV2(TCP6), header: { version: 2, command: 'proxy', ...TCP6 } },
  {
    name: 'v2 TCP6 IPv4-mapped prints as Node does',
    bytes: encodeProxyV2({ ...TCP6, sourceAddress: '::ffff:10.0.0.7' }),
    header: { version: 2, command: 'proxy', ...TCP6, sourceAddress: '::ffff:10.0.0.7' },
  },
  { name: 'v2 LOCAL', bytes: encodeProxyV2(), header: { version: 2, command: 'local' } },
  {
    name: 'v2 LOCAL with an address block, family ignored',
    bytes: v2(0x11, Buffer.alloc(12, 7), 0x20),
    header: { version: 2, command: 'local' },
  },
  {
    name: 'v2 TCP4 with TLVs skipped',
    bytes: encodeProxyV2(TCP4, [
      { type: 0x01, value: Buffer.from('h2') },
      { type: 0x04, value: Buffer.alloc(0) },
      { type: 0xea, value: Buffer.alloc(300, 1) },
    ]),
    header: { version: 2, command: 'proxy', ...TCP4 },
  },
  { name: 'v2 PROXY UNSPEC: no addresses', bytes: v2(0x00, Buffer.alloc(0)), header: { version: 2, command: 'proxy' } },
  { name: 'v2 UDP over IPv4: no TCP addresses', bytes: v2(0x12, Buffer.alloc(12, 1)), header: { version: 2, command: 'proxy' } },
  { name: 'v2 UNIX stream: no TCP addresses', bytes: v2(0x31, Buffer.alloc(216, 0x61)), header: { version: 2, command: 'proxy' } },
  {
    name: 'v2 at the size cap',
    bytes: encodeProxyV2(TCP4, [{ type: 0x04, value: Buffer.alloc(PROXY_V2_MAX_LENGTH - 16 - 12 - 3) }]),
    header: { version: 2, command: 'proxy', ...TCP4 },
  },
]

/** Feeds `pieces` to a fresh parser; the header and all the bytes after it, once done. */
function feed(pieces: Buffer[]): { header?: ProxyHeader; rest: Buffer } | undefined {
  const parser = new ProxyHeaderParser()
  let done: { header?: ProxyHeader; rest: Buffer } | undefined
  for (const piece of pieces) {
    const result = parser.push(piece)
    if (!result.done) continue
    if (done) done.rest = Buffer.concat([done.rest, result.rest])
    else done = result.header ? { header: result.header, rest: result.rest } : { rest: result.rest }
  }
  return done
}

t.test('valid headers parse, with the stream after them left intact', async (t) => {
  for (const { name, bytes, header } of valid) {
    const scan = scanProxyHeader(Buffer.concat([bytes, PAYLOAD]))
    t.same(scan, { status: 'complete', header, length: bytes.length }, name)
    const fed = feed([bytes, PAYLOAD])
    t.same(fed?.header, header, `${name}: parser`)
    t.same(fed?.rest, PAYLOAD, `${name}: rest`)
  }
  t.equal(valid[5]!.bytes.length, 107, 'the v1 maximum is 107 bytes')
})

t.test('valid headers split at every byte boundary', async (t) => {
  for (const { name, bytes, header } of valid) {
    const whole = Buffer.concat([bytes, PAYLOAD])
    // The cap case is large; every boundary there costs seconds for nothing new.
    const step = whole.length > 1000 ? 97 : 1
    for (let i = 0; i <= whole.length; i += step) {
      const fed = feed([whole.subarray(0, i), whole.subarray(i)])
      if (!fed || !t.same(fed.header, header, `${name}, cut at ${i}`) || !fed.rest.equals(PAYLOAD)) {
        t.fail(`${name}: cut at ${i} gave ${JSON.stringify(fed)}`)
        return
      }
    }
    const oneByOne = [...whole].map((byte) => Buffer.of(byte))
    const fed = feed(oneByOne)
    t.same(fed?.header, header, `${name}, one byte at a time`)
    t.same(fed?.rest, PAYLOAD, `${name}, one byte at a time: rest`)
  }
})

t.test('the parser reports the version as soon as the signature is in', async (t) => {
  const parser = new ProxyHeaderParser()
  t.same(parser.push(Buffer.from('PRO')), { done: false })
  t.same(parser.push(Buffer.from('XY TCP4 ')), { done: false, version: 1 })
  const v2Parser = new ProxyHeaderParser()
  t.same(v2Parser.push(PROXY_V2_SIGNATURE.subarray(0, 11)), { done: false })
  t.same(v2Parser.push(PROXY_V2_SIGNATURE.subarray(11)), { done: false, version: 2 })
  t.same(v2Parser.push(Buffer.from([0x21, 0x11, 0x00, 0x0c, 1])), { done: false, version: 2 })
})

t.test('streams without a header pass through whole', async (t) => {
  for (const start of ['GET / HTTP/1.1\r\n', 'SSH-2.0-OpenSSH_9.6\r\n', '\x16\x03\x01\x02\x00', 'PROXZ', 'P', '\r\n\r\nX']) {
    const bytes = Buffer.from(start, 'latin1')
    const scan = scanProxyHeader(bytes)
    const expected = start === 'P' ? 'partial' : 'absent'
    t.equal(scan.status, expected, `${JSON.stringify(start)} is ${expected}`)
    if (expected === 'absent') t.same(feed([bytes]), { rest: bytes })
  }
  t.equal(proxyHeaderVersion(Buffer.alloc(0)), undefined)
  t.equal(proxyHeaderVersion(Buffer.from('PROX')), undefined)
  t.equal(proxyHeaderVersion(Buffer.from('PROXY')), 1)
  t.equal(proxyHeaderVersion(PROXY_V2_SIGNATURE.subarray(0, 5)), undefined)
  t.equal(proxyHeaderVersion(PROXY_V2_SIGNATURE), 2)
  t.equal(proxyHeaderVersion(Buffer.from('POST')), 0)
})

const malformed: Array<[string, Buffer, ProxyProtocolErrorCode]> = [
  ['v1 without CRLF in 107 bytes', Buffer.from(`PROXY UNKNOWN ${'x'.repeat(100)}`), 'ERR_PROXY_V1_TOO_LONG'],
  ['v1 of 108 bytes', Buffer.from(`PROXY UNKNOWN ${'f'.repeat(92)}\r\n`), 'ERR_PROXY_V1_TOO_LONG'],
  ['v1 ending in bare LF', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'), 'ERR_PROXY_V1_BARE_LF'],
  ['v1 with a bare CR', Buffer.from('PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n'), 'ERR_PROXY_V1_BARE_CR'],
  ['v1 ending in bare CR', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX'), 'ERR_PROXY_V1_BARE_CR'],
  ['v1 without a space after PROXY', Buffer.from('PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n'), 'ERR_PROXY_V1_SYNTAX'],
  ['v1 with nothing after PROXY', Buffer.from('PROXY\r\n'), 'ERR_PROXY_V1_SYNTAX'],
  ['v1 with a doubled space', Buffer.from('PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n'), 'ERR_PROXY_V1_SYNTAX'],
  ['v1 with a trailing space', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n'), 'ERR_PROXY_V1_SYNTAX'],
  ['v1 with a missing port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'), 'ERR_PROXY_V1_SYNTAX'],
  ['v1 with family UDP4', Buffer.from('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'), 'ERR_PROXY_V1_FAMILY'],
  ['v1 with family in lower case', Buffer.from('PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n'), 'ERR_PROXY_V1_FAMILY'],
  ['v1 TCP4 with an octet over 255', Buffer.from('PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n'), 'ERR_PROXY_V1_ADDRESS'],
  ['v1 TCP4 with a leading zero', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n'), 'ERR_PROXY_V1_ADDRESS'],
  ['v1 TCP4 with an IPv6 address', Buffer.from('PROXY TCP4 ::1 5.6.7.8 1 2\r\n'), 'ERR_PROXY_V1_ADDRESS'],
  ['v1 TCP6 with an IPv4 address', Buffer.from('PROXY TCP6 1.2.3.4 ::1 1 2\r\n'), 'ERR_PROXY_V1_ADDRESS'],
  ['v1 TCP6 with a zone id', Buffer.from('PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n'), 'ERR_PROXY_V1_ADDRESS'],
  ['v1 TCP6 with two ::', Buffer.from('PROXY TCP6 1::2::3 ::1 1 2\r\n'), 'ERR_PROXY_V1_ADDRESS'],
  ['v1 with a port over 65535', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'), 'ERR_PROXY_V1_PORT'],
  ['v1 with a leading zero in a port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 022\r\n'), 'ERR_PROXY_V1_PORT'],
  ['v1 with a signed port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n'), 'ERR_PROXY_V1_PORT'],
  ['v1 with a hex port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n'), 'ERR_PROXY_V1_PORT'],
  ['v2 version 1', v2(0x11, Buffer.alloc(12), 0x11), 'ERR_PROXY_V2_VERSION'],
  ['v2 version 3', v2(0x11, Buffer.alloc(12), 0x31), 'ERR_PROXY_V2_VERSION'],
  ['v2 command 2', v2(0x11, Buffer.alloc(12), 0x22), 'ERR_PROXY_V2_COMMAND'],
  ['v2 family 4', v2(0x41, Buffer.alloc(12)), 'ERR_PROXY_V2_FAMILY'],
  ['v2 transport 3', v2(0x13, Buffer.alloc(12)), 'ERR_PROXY_V2_FAMILY'],
  ['v2 TCP4 with 11 address bytes', v2(0x11, Buffer.alloc(11)), 'ERR_PROXY_V2_ADDRESS_LENGTH'],
  ['v2 TCP6 with IPv4-sized addresses', v2(0x21, Buffer.alloc(12)), 'ERR_PROXY_V2_ADDRESS_LENGTH'],
  ['v2 UNIX with 215 address bytes', v2(0x31, Buffer.alloc(215)), 'ERR_PROXY_V2_ADDRESS_LENGTH'],
  ['v2 over the size cap', v2(0x11, Buffer.alloc(PROXY_V2_MAX_LENGTH - 15)), 'ERR_PROXY_V2_TOO_LONG'],
  ['v2 with a TLV running past the end', v2(0x11, Buffer.concat([Buffer.alloc(12), tlv(1, Buffer.from('h2')).subarray(0, 4)])), 'ERR_PROXY_V2_TLV'],
  ['v2 with two stray bytes after the TLVs', v2(0x11, Buffer.concat([Buffer.alloc(12), tlv(1, Buffer.from('h2')), Buffer.of(4, 0)])), 'ERR_PROXY_V2_TLV'],
]

t.test('malformed headers are refused, each with its own error', async (t) => {
  for (const [name, bytes, code] of malformed) {
    t.throws(() => scanProxyHeader(bytes), { name: 'ProxyProtocolError', code }, name)
    // The same error however the bytes arrive.
    t.throws(() => feed([...bytes].map((byte) => Buffer.of(byte))), { code }, `${name}, byte by byte`)
  }
})

t.test('oversized and unterminated headers are refused without waiting for all their bytes', async (t) => {
  // Only the 16-byte fixed part of a v2 header that announces 64 KiB.
  const fixed = v2(0x11, Buffer.alloc(0))
  fixed.writeUInt16BE(0xffff, 14)
  t.throws(() => scanProxyHeader(fixed), { code: 'ERR_PROXY_V2_TOO_LONG' })
  const address = v2(0x21, Buffer.alloc(0))
  address.writeUInt16BE(12, 14)
  t.throws(() => scanProxyHeader(address), { code: 'ERR_PROXY_V2_ADDRESS_LENGTH' })
  t.throws(() => scanProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(96)}`)), { code: 'ERR_PROXY_V1_TOO_LONG' })
  t.same(scanProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(95)}`)), { status: 'partial', version: 1 })
})

t.test('errors carry the offending text', async (t) => {
  t.throws(() => scanProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.999 1 2\r\n')), {
    message: 'PROXY v1 header has an invalid address: "5.6.7.999" is not an IPv4 address',
  })
  t.throws(() => scanProxyHeader(v2(0x51, Buffer.alloc(0))), { message: 'PROXY v2 header has an unknown address family or transport: 0x51' })
})

t.test('encoders', async (t) => {
  t.equal(encodeProxyV1(TCP4).toString(), 'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n')
  t.equal(encodeProxyV1().toString(), 'PROXY UNKNOWN\r\n')
  t.same(scanProxyHeader(encodeProxyV1(TCP6)), { status: 'complete', header: { version: 1, command: 'proxy', ...TCP6 }, length: encodeProxyV1(TCP6).length })
  t.equal(encodeProxyV2(TCP4).toString('hex'), PROXY_V2_SIGNATURE.toString('hex') + '2111000c' + 'c0a80001' + 'c0a8000b' + 'dc04' + '01bb', 'byte layout from the spec')
  t.equal(encodeProxyV2().toString('hex'), PROXY_V2_SIGNATURE.toString('hex') + '20000000')
  t.throws(() => encodeProxyV1({ ...TCP4, destinationAddress: '::1' }), TypeError)
  t.throws(() => encodeProxyV2({ ...TCP4, sourceAddress: 'example.com' }), TypeError)
})

t.test('fuzz: 100,000 random buffers never throw anything else and never hang', async (t) => {
  let seed = 0x5eed
  const rand = (n: number) => {
    // xorshift32: repeatable, so a failure can be replayed.
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) % n
  }
  const tokens = [
    'PROXY',
    ' ',
    'TCP4',
    'TCP6',
    'UNKNOWN',
    '1.2.3.4',
    '255.255.255.255',
    '::1',
    'ffff::',
    '::ffff:1.2.3.4',
    '65535',
    '0',
    '80',
    '\r',
    '\n',
    '\r\n',
    ':',
    '.',
    '01',
    'x',
  ]
  const randomBuffer = (): Buffer => {
    const kind = rand(4)
    if (kind === 0) {
      // Plausible v1 lines made of the grammar's own tokens.
      let text = 'PROXY'
      const count = rand(14)
      for (let i = 0; i < count; i++) text += tokens[rand(tokens.length)]
      return Buffer.from(text, 'latin1')
    }
    if (kind === 1) {
      // Plausible v2 headers: the signature, then mostly-valid fields and random bodies.
      const body = Buffer.alloc(rand(300))
      for (let i = 0; i < body.length; i++) body[i] = rand(256)
      const header = Buffer.concat([
        PROXY_V2_SIGNATURE,
        Buffer.of([0x20, 0x21, 0x22, 0x11, rand(256)][rand(5)]!, [0x00, 0x11, 0x12, 0x21, 0x31, rand(256)][rand(6)]!),
        Buffer.alloc(2),
        body,
      ])
      header.writeUInt16BE(rand(3) === 0 ? rand(0x10000) : Math.max(0, body.length - rand(8)), 14)
      return header
    }
    const bytes = Buffer.alloc(rand(kind === 2 ? 20 : 300))
    for (let i = 0; i < bytes.length; i++) bytes[i] = rand(256)
    // Random bytes after a real signature prefix reach past the first check.
    const prefix = rand(3) === 0 ? Buffer.from('PROXY ') : rand(2) === 0 ? PROXY_V2_SIGNATURE.subarray(0, rand(13)) : Buffer.alloc(0)
    return Buffer.concat([prefix, bytes])
  }
  /** A verdict as text: the error code, or the scan/feed result without the rest. */
  const verdict = (run: () => unknown): string => {
    try {
      return String(JSON.stringify(run()))
    } catch (error) {
      if (!(error instanceof ProxyProtocolError)) throw error
      return error.code
    }
  }

  const started = Date.now()
  const counts = { complete: 0, absent: 0, partial: 0, error: 0 }
  for (let i = 0; i < 100_000; i++) {
    const bytes = randomBuffer()
    let scan: ReturnType<typeof scanProxyHeader> | undefined
    const whole = verdict(() => (scan = scanProxyHeader(bytes)))
    counts[scan?.status ?? 'error']++
    // However the bytes are cut, the parser reaches the same verdict as on the whole buffer.
    const expected =
      scan === undefined
        ? whole
        : scan.status === 'partial'
          ? 'undefined'
          : scan.status === 'absent'
            ? JSON.stringify({ rest: bytes.toString('hex') })
            : JSON.stringify({ header: scan.header, rest: bytes.subarray(scan.length).toString('hex') })
    const cut = rand(bytes.length + 1)
    const pieces = verdict(() => {
      const fed = feed([bytes.subarray(0, cut), bytes.subarray(cut)])
      return fed && { ...fed, rest: fed.rest.toString('hex') }
    })
    if (pieces !== expected) {
      t.fail(`buffer ${bytes.toString('hex')} cut at ${cut}: ${pieces}, whole: ${expected}`)
      return
    }
  }
  const elapsed = Date.now() - started
  t.ok(elapsed < 15_000, `100,000 buffers in ${elapsed} ms`)
  // The generator must reach every outcome, or the fuzz proves little.
  for (const [kind, count] of Object.entries(counts)) t.ok(count > 1000, `${count} ${kind}`)
})
