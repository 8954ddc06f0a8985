// Frame encoding and the incremental parser: the same frames come out however the byte
// stream is cut, down to one byte per chunk.

import t, { type Test } from 'tap'
import { type Frame, frame, rawPeer, rng } from '../../test/helpers/yamux.ts'
import { Flag, FrameType, HEADER_SIZE, YamuxError } from './const.ts'
import { decodeHeader, encodeHeader, FrameParser } from './frame.ts'
import type { Stream } from './stream.ts'

t.test('header layout is the spec: version, type, flags, stream id, length, big-endian', async (t) => {
  const h = encodeHeader(FrameType.WindowUpdate, Flag.SYN | Flag.FIN, 0x01020304, 0xa0b0c0d0)
  t.same([...h], [0, 1, 0, 5, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0])
  t.same(decodeHeader(h), { version: 0, type: 1, flags: 5, streamId: 0x01020304, length: 0xa0b0c0d0 })
  t.equal(HEADER_SIZE, 12)
})

/** A mix of frames with bodies of awkward sizes around the header size and chunk sizes. */
function sampleFrames(): { bytes: Buffer; frames: Frame[] } {
  const frames: Frame[] = []
  const sizes = [0, 1, 11, 12, 13, 100, 4095, 65536, 70000]
  let id = 2
  for (const size of sizes) {
    const body = Buffer.alloc(size)
    for (let i = 0; i < size; i++) body[i] = (i * 31 + size) & 0xff
    frames.push({ type: FrameType.Data, flags: Flag.SYN, streamId: id, length: size, body })
    frames.push({ type: FrameType.WindowUpdate, flags: 0, streamId: id, length: 12345, body: Buffer.alloc(0) })
    frames.push({ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: id, body: Buffer.alloc(0) })
    id += 2
  }
  const bytes = Buffer.concat(frames.map((f) => frame(f.type, f.flags, f.streamId, f.length, f.body)))
  return { bytes, frames }
}

function parseInPieces(bytes: Buffer, cut: (remaining: number) => number): Frame[] {
  const out: Frame[] = []
  let current: Frame | null = null
  let parts: Buffer[] = []
  const parser = new FrameParser({
    onFrame(type, flags, streamId, length) {
      current = { type, flags, streamId, length, body: Buffer.alloc(0) }
      if (type !== FrameType.Data) out.push(current)
    },
    onBody(piece) {
      parts.push(Buffer.from(piece))
    },
    onBodyEnd() {
      current!.body = Buffer.concat(parts)
      parts = []
      out.push(current!)
    },
  })
  let off = 0
  while (off < bytes.length) {
    const n = Math.max(1, Math.min(cut(bytes.length - off), bytes.length - off))
    parser.push(bytes.subarray(off, off + n))
    off += n
  }
  return out
}

t.test('parser: one byte at a time and at random split points', async (t) => {
  const { bytes, frames } = sampleFrames()
  t.same(
    parseInPieces(bytes, () => bytes.length),
    frames,
    'all in one chunk',
  )
  t.same(
    parseInPieces(bytes, () => 1),
    frames,
    'one byte per chunk',
  )
  for (let seed = 1; seed <= 20; seed++) {
    const rand = rng(seed)
    const got = parseInPieces(bytes, () => 1 + rand(seed % 2 ? 40 : 9000))
    t.same(got, frames, `random splits, seed ${seed}`)
  }
})

t.test('parser rejects a bad version and an unknown type, and stops', async (t) => {
  const frames: number[] = []
  const handler = { onFrame: (type: number) => frames.push(type), onBody() {}, onBodyEnd() {} }
  const p1 = new FrameParser(handler)
  const bad = encodeHeader(FrameType.Ping, 0, 0, 0)
  bad[0] = 1
  t.throws(() => p1.push(bad), { code: 'ERR_YAMUX_INVALID_VERSION' })
  t.ok(p1.stopped)
  p1.push(encodeHeader(FrameType.Ping, 0, 0, 0))
  t.same(frames, [], 'nothing parsed after the error')

  const p2 = new FrameParser(handler)
  const unknown = encodeHeader(FrameType.Ping, 0, 0, 0)
  unknown[1] = 4
  try {
    p2.push(unknown)
    t.fail('should throw')
  } catch (err) {
    t.ok(err instanceof YamuxError && err.isProtocolError, 'a protocol error')
    t.equal((err as YamuxError).code, 'ERR_YAMUX_INVALID_MSG_TYPE')
  }
})

/**
 * The session itself, fed by a hand-driven peer in pieces: it must open the streams,
 * deliver each body exactly, see the FINs and answer every ping.
 */
async function feedSession(t: Test, cut: (remaining: number) => number): Promise<void> {
  const peer = rawPeer({ client: true, enableKeepAlive: false })
  const got = new Map<number, Buffer[]>()
  const ended = new Set<number>()
  peer.session.on('stream', (s: Stream) => {
    got.set(s.id, [])
    s.on('data', (d: Buffer) => got.get(s.id)!.push(Buffer.from(d)))
    s.on('end', () => ended.add(s.id))
  })
  const expected = new Map<number, Buffer>()
  const wire: Buffer[] = []
  const sizes = [0, 1, 11, 12, 13, 4095, 65536, 100_000]
  let id = 2
  for (const size of sizes) {
    const body = Buffer.alloc(size)
    for (let i = 0; i < size; i++) body[i] = (i * 7 + id) & 0xff
    expected.set(id, body)
    const half = size >> 1
    wire.push(frame(FrameType.WindowUpdate, Flag.SYN, id, 0))
    wire.push(frame(FrameType.Data, 0, id, half, body.subarray(0, half)))
    wire.push(frame(FrameType.Ping, Flag.SYN, 0, 1000 + id))
    wire.push(frame(FrameType.Data, Flag.FIN, id, size - half, body.subarray(half)))
    id += 2
  }
  const bytes = Buffer.concat(wire)
  let off = 0
  while (off < bytes.length) {
    const n = Math.max(1, Math.min(cut(bytes.length - off), bytes.length - off))
    peer.send(bytes.subarray(off, off + n))
    off += n
    if (off % 4096 < n) await new Promise((r) => setImmediate(r))
  }
  for (const sid of expected.keys()) {
    await peer.nextFrame((f) => f.type === FrameType.Ping && f.flags === Flag.ACK && f.length === 1000 + sid)
  }
  const deadline = Date.now() + 5000
  while (ended.size < expected.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
  for (const [sid, body] of expected) {
    t.ok(ended.has(sid), `stream ${sid} ended`)
    t.ok(Buffer.concat(got.get(sid) ?? []).equals(body), `stream ${sid}: ${body.length} bytes exact`)
  }
  t.equal(peer.session.isClosed, false, 'the session is healthy')
  peer.session.close()
}

t.test('session fed one byte at a time', (t) => feedSession(t, () => 1))

t.test('session fed at random split points', async (t) => {
  for (const seed of [3, 17, 99]) {
    const rand = rng(seed)
    await t.test(`seed ${seed}`, (t) => feedSession(t, () => 1 + rand(3000)))
  }
})
