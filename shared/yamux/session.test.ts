// Session behaviour: stream lifecycle (SYN/ACK/FIN/RST), GoAway, pings and keepalive,
// the accept backlog, and what happens to malformed input.

import { once } from 'node:events'
import { Duplex, duplexPair } from 'node:stream'
import t from 'tap'
import { frame, memoryPair, rawPeer, sleep, tcpPair, waitFor } from '../../test/helpers/yamux.ts'
import { Flag, FrameType, GoAwayCode, INITIAL_STREAM_WINDOW, YamuxError } from './const.ts'
import { createSession, type Session } from './session.ts'
import type { Stream } from './stream.ts'

function readAll(stream: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    stream.setEncoding('utf8')
    stream.on('data', (d: string) => (text += d))
    stream.once('end', () => resolve(text))
    stream.once('error', reject)
  })
}

/** Unlike events.once, does not listen for 'error' (which would change what is emitted). */
const closed = (e: { once(ev: 'close', fn: () => void): unknown }): Promise<void> => new Promise((resolve) => e.once('close', () => resolve()))

/** The error a session closed with (undefined for a clean close), without listening for 'error'. */
const closeReason = (s: Session): Promise<YamuxError | undefined> => new Promise((resolve) => s.once('close', (err?: Error) => resolve(err as YamuxError | undefined)))

const nextStream = (s: Session): Promise<Stream> => new Promise((resolve) => s.once('stream', resolve))

t.test('half-close: end() sends FIN, the stream stays readable until the peer FINs', async (t) => {
  const pair = memoryPair()
  const incoming = nextStream(pair.server)
  const stream = pair.client.open()
  const clientRead = readAll(stream)
  stream.end('hello')
  const remote = await incoming
  t.equal(await readAll(remote), 'hello', 'server reads up to the FIN')
  t.equal(pair.client.numStreams, 1, 'half-closed: still open')
  await sleep(20)
  remote.write('world, ')
  remote.end('after your FIN')
  t.equal(await clientRead, 'world, after your FIN', 'client still reads after its own end()')
  await waitFor(() => pair.client.numStreams === 0 && pair.server.numStreams === 0, 2000, 'streams removed')
  t.pass('both FINs: the stream is removed on both sides')
  await pair.close()
})

t.test('destroy() sends RST: the peer gets ECONNRESET and both forget the stream', async (t) => {
  const pair = memoryPair()
  const incoming = nextStream(pair.server)
  const stream = pair.client.open()
  stream.write('ping')
  const remote = await incoming
  await once(remote, 'readable')
  const errored = once(stream, 'error')
  const streamClosed = closed(stream)
  remote.destroy()
  const [err] = await errored
  t.equal(err.code, 'ECONNRESET')
  t.match(err.message, /reset by the remote end/)
  await streamClosed
  t.equal(pair.client.numStreams, 0)
  t.equal(pair.server.numStreams, 0)
  await pair.close()
})

t.test('a reset stream without an error listener just closes (no crash)', async (t) => {
  const pair = memoryPair()
  const incoming = nextStream(pair.server)
  const stream = pair.client.open()
  stream.write('x')
  const remote = await incoming
  remote.destroy()
  await closed(stream)
  t.ok(stream.destroyed)
  t.equal(pair.client.isClosed, false, 'the session is unaffected')
  await pair.close()
})

t.test('GoAway: the peer can no longer open streams; existing ones carry on', async (t) => {
  const pair = memoryPair()
  const incoming = nextStream(pair.server)
  const before = pair.client.open()
  const remote = await incoming
  const goaway = once(pair.client, 'goaway')
  pair.server.goAway()
  await goaway
  t.throws(() => pair.client.open(), { code: 'ERR_YAMUX_REMOTE_GO_AWAY' })
  remote.end('still works')
  before.end()
  t.equal(await readAll(before), 'still works')
  t.equal(pair.client.isClosed, false)
  // The server itself may still open streams towards the client.
  const back = nextStream(pair.client)
  pair.server.open().end('reverse')
  t.equal(await readAll(await back), 'reverse')
  await pair.close()
})

t.test('a SYN that crosses our GoAway is answered with RST', async (t) => {
  const peer = rawPeer({ client: true, enableKeepAlive: false })
  let emitted = 0
  peer.session.on('stream', () => emitted++)
  peer.session.goAway()
  const ga = await peer.nextFrame((f) => f.type === FrameType.GoAway)
  t.equal(ga.length, GoAwayCode.Normal)
  peer.send(frame(FrameType.Data, Flag.SYN, 2, 3, Buffer.from('abc')))
  const rst = await peer.nextFrame((f) => f.streamId === 2)
  t.equal(rst.flags & Flag.RST, Flag.RST)
  t.equal(emitted, 0)
  t.equal(peer.session.isClosed, false)
  peer.session.close()
})

t.test('ping measures the round trip; pings from the peer are answered', async (t) => {
  const pair = await tcpPair()
  const rtt = await pair.client.ping()
  t.type(rtt, 'number')
  t.ok(rtt >= 0 && rtt < 5000, `rtt ${rtt.toFixed(3)} ms`)
  t.ok(pair.client.rttMs > 0, 'the smoothed RTT is known')
  await pair.close()
  await t.rejects(pair.client.ping(), { code: 'ERR_YAMUX_SESSION_SHUTDOWN' })

  const peer = rawPeer({ client: false, enableKeepAlive: false })
  peer.send(frame(FrameType.Ping, Flag.SYN, 0, 0xdeadbeef))
  const ack = await peer.nextFrame((f) => f.type === FrameType.Ping && (f.flags & Flag.ACK) !== 0)
  t.equal(ack.length, 0xdeadbeef, 'the opaque value is echoed')
  peer.session.close()
})

t.test('accept backlog: without a listener, streams wait up to acceptBacklog, then are reset', async (t) => {
  const peer = rawPeer({ client: true, enableKeepAlive: false, acceptBacklog: 4 })
  for (let id = 2; id <= 12; id += 2) peer.send(frame(FrameType.WindowUpdate, Flag.SYN, id, 0))
  const rst10 = await peer.nextFrame((f) => f.streamId === 10)
  const rst12 = await peer.nextFrame((f) => f.streamId === 12)
  t.equal(rst10.flags, Flag.RST, 'the 5th is reset')
  t.equal(rst12.flags, Flag.RST, 'the 6th is reset')
  t.notOk(
    peer.frames.some((f) => f.streamId >= 2 && f.streamId <= 8),
    'the waiting ones are not acknowledged yet',
  )
  t.equal(peer.session.numStreams, 4)
  const got: number[] = []
  peer.session.on('stream', (s: Stream) => got.push(s.id))
  for (const id of [2, 4, 6, 8]) {
    const ack = await peer.nextFrame((f) => f.streamId === id)
    t.equal(ack.flags, Flag.ACK, `stream ${id} acknowledged once a listener exists`)
  }
  t.same(got, [2, 4, 6, 8])
  peer.session.close()
})

t.test('accept backlog over a real pair: the opener sees ECONNREFUSED', async (t) => {
  const pair = memoryPair({}, { acceptBacklog: 2 })
  const streams = [pair.client.open(), pair.client.open(), pair.client.open()]
  const [err] = await once(streams[2]!, 'error')
  t.equal(err.code, 'ECONNREFUSED')
  t.equal(streams[0]!.destroyed, false)
  await pair.close()
})

/** A duplex that takes every write and never answers: a peer behind a silent drop. */
function blackHole(): Duplex {
  return new Duplex({
    read() {},
    write(_chunk, _enc, cb) {
      cb()
    },
  })
}

t.test('keepalive: a silent peer is noticed within two intervals', async (t) => {
  const interval = 200
  // The keepalive timer is unref'd (it must not keep a process alive); hold the loop open.
  const hold = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(hold))
  const session = createSession(blackHole(), { client: true, keepAliveIntervalMs: interval })
  const start = performance.now()
  const err = await closeReason(session)
  const elapsed = performance.now() - start
  t.equal(err?.code, 'ERR_YAMUX_KEEPALIVE_TIMEOUT')
  t.ok(elapsed <= 2 * interval + 250, `closed after ${elapsed.toFixed(0)} ms (interval ${interval} ms)`)
  t.ok(session.isClosed)
})

t.test('keepalive: a path that goes silent mid-session kills both ends; a live one survives', async (t) => {
  const interval = 150
  const hold = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(hold))
  const [a, b] = duplexPair()
  let dropping = false
  // Two relays between the sessions that can start swallowing everything, like a NAT
  // that forgot the flow.
  const [ca, cb] = duplexPair()
  ca.on('data', (d: Buffer) => dropping || a.write(d))
  a.on('data', (d: Buffer) => dropping || ca.write(d))
  const client = createSession(cb, { client: true, keepAliveIntervalMs: interval })
  const server = createSession(b, { client: false, keepAliveIntervalMs: interval })
  await sleep(interval * 5)
  t.equal(client.isClosed || server.isClosed, false, 'idle but alive: keepalive keeps it open')
  const start = performance.now()
  dropping = true
  const [errClient, errServer] = await Promise.all([closeReason(client), closeReason(server)])
  const elapsed = performance.now() - start
  t.equal(errClient?.code, 'ERR_YAMUX_KEEPALIVE_TIMEOUT')
  t.equal(errServer?.code, 'ERR_YAMUX_KEEPALIVE_TIMEOUT')
  t.ok(elapsed <= 2 * interval + 250, `both closed within ${elapsed.toFixed(0)} ms`)
})

/** Counts the Ping frames with SYN (requests, not answers) in one direction of a byte stream. */
function pingCounter(): { feed: (chunk: Buffer) => void; readonly pings: number } {
  let pending = Buffer.alloc(0)
  let pings = 0
  return {
    feed(chunk: Buffer) {
      pending = Buffer.concat([pending, chunk])
      for (;;) {
        if (pending.length < 12) return
        const type = pending[1]
        const body = type === FrameType.Data ? pending.readUInt32BE(8) : 0
        if (pending.length < 12 + body) return
        if (type === FrameType.Ping && (pending.readUInt16BE(2) & Flag.SYN) !== 0) pings++
        pending = pending.subarray(12 + body)
      }
    },
    get pings() {
      return pings
    },
  }
}

t.test("keepalive when quiet only: the peer's pings keep an idle session open; a silent path is still noticed", async (t) => {
  const interval = 150
  const hold = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(hold))
  const [a, b] = duplexPair()
  const [ca, cb] = duplexPair()
  let dropping = false
  const fromQuiet = pingCounter()
  const fromActive = pingCounter()
  ca.on('data', (d: Buffer) => {
    fromActive.feed(d)
    if (!dropping) a.write(d)
  })
  a.on('data', (d: Buffer) => {
    fromQuiet.feed(d)
    if (!dropping) ca.write(d)
  })
  const active = createSession(cb, { client: true, keepAliveIntervalMs: interval })
  const quiet = createSession(b, { client: false, keepAliveIntervalMs: interval, keepAliveWhenQuietOnly: true })
  await sleep(interval * 6)
  t.equal(active.isClosed || quiet.isClosed, false, 'idle but alive')
  t.ok(fromActive.pings >= 4, `the active side pinged every interval (${fromActive.pings})`)
  t.equal(fromQuiet.pings, 1, 'the quiet side sent only its first ping (the round trip for window tuning)')

  const incoming = nextStream(quiet)
  const stream = active.open()
  stream.write('x')
  await incoming
  const before = fromQuiet.pings
  await sleep(interval * 4)
  t.ok(fromQuiet.pings - before >= 2, `with a stream open it pings every interval (${fromQuiet.pings - before})`)
  stream.destroy()
  await sleep(interval * 2)

  dropping = true
  const [errActive, errQuiet] = await Promise.all([closeReason(active), closeReason(quiet)])
  t.equal(errActive?.code, 'ERR_YAMUX_KEEPALIVE_TIMEOUT')
  t.equal(errQuiet?.code, 'ERR_YAMUX_KEEPALIVE_TIMEOUT', 'the quiet side notices the silence too')
})

t.test('ping() gives up after connectionWriteTimeoutMs without killing the session', async (t) => {
  const session = createSession(blackHole(), { client: true, enableKeepAlive: false, connectionWriteTimeoutMs: 100 })
  await t.rejects(session.ping(), { code: 'ERR_YAMUX_TIMEOUT' })
  t.equal(session.isClosed, false)
  session.close()
})

t.test('a connection that stops taking writes closes the session after connectionWriteTimeoutMs', async (t) => {
  // Writes are accepted into the buffer but never complete: a peer whose TCP window is shut.
  const hold = setInterval(() => {}, 1000) // the session's timers are unref'd
  t.teardown(() => clearInterval(hold))
  const stuck = new Duplex({ read() {}, write() {}, highWaterMark: 1024 })
  const session = createSession(stuck, { client: true, enableKeepAlive: false, connectionWriteTimeoutMs: 150 })
  const stream = session.open()
  stream.on('error', () => {})
  stream.write(Buffer.alloc(100_000))
  const start = performance.now()
  const err = await closeReason(session)
  t.equal(err?.code, 'ERR_YAMUX_WRITE_TIMEOUT')
  t.ok(performance.now() - start >= 100, 'not before the timeout')
  t.ok(stream.destroyed, 'its streams are gone')
})

t.test("data frames go on into a connection past its own mark, up to the session's backlog", async (t) => {
  // A connection that holds every write until released: a TLS socket counts a write as
  // unsent until its callback, a loop turn after the kernel took it.
  let held: (() => void)[] = []
  const conn = new Duplex({
    read() {},
    write(_chunk, _encoding, callback) {
      held.push(callback)
    },
    highWaterMark: 16 * 1024,
  })
  const session = createSession(conn, { client: true, enableKeepAlive: false })
  const streams = [session.open(), session.open(), session.open()]
  for (const stream of streams) stream.write(Buffer.alloc(INITIAL_STREAM_WINDOW, 1))
  await sleep(20)
  t.ok(conn.writableLength >= 3 * INITIAL_STREAM_WINDOW, `each stream's window went out at once (${conn.writableLength} bytes unsent)`)
  while (held.length > 0) {
    const callbacks = held
    held = []
    for (const callback of callbacks) callback()
    await sleep(1)
  }
  t.equal(conn.writableLength, 0, 'and drained')
  session.close()
})

t.test('a peer that floods pings without reading the answers is not read any further', async (t) => {
  const [mine, theirs] = duplexPair()
  const session = createSession(mine, { client: true, enableKeepAlive: false })
  // 400,000 pings (4.8 MB) whose 400,000 answers nobody reads.
  const flood = Buffer.concat(Array.from({ length: 4000 }, (_, i) => frame(FrameType.Ping, Flag.SYN, 0, i)))
  for (let i = 0; i < 100; i++) theirs.write(flood)
  await sleep(200)
  const answeredBefore = session.stats().framesReceived
  t.ok(answeredBefore < 400_000, `reading stopped after ${answeredBefore} pings while answers piled up`)
  t.ok(mine.writableLength < 4 * 1024 * 1024, `unsent answers stay bounded (${mine.writableLength} bytes)`)
  t.equal(session.isClosed, false)
  // Once the peer reads, everything flows again and every ping is answered.
  let answers = 0
  let tail = Buffer.alloc(0)
  theirs.on('data', (d: Buffer) => {
    tail = Buffer.concat([tail, d])
    answers += Math.floor(tail.length / 12)
    tail = tail.subarray(tail.length - (tail.length % 12))
  })
  await waitFor(() => answers >= 400_001, 10_000, 'all pings answered') // and the session's own first ping
  t.equal(session.stats().framesReceived, 400_000)
  session.close()
})

t.test('close() ends every stream and the connection; the peer closes too', async (t) => {
  const pair = memoryPair()
  const incoming = nextStream(pair.server)
  const s1 = pair.client.open()
  const s2 = pair.client.open()
  s1.write('a')
  const remote = await incoming
  const errs: string[] = []
  s1.on('error', (e: YamuxError) => errs.push(e.code))
  remote.on('error', (e: YamuxError) => errs.push(e.code))
  const peerClosed = closeReason(pair.server)
  pair.client.close()
  const err = await closeReason(pair.client)
  t.equal(err, undefined, 'a local close is not an error')
  await peerClosed
  t.ok(s1.destroyed && s2.destroyed && remote.destroyed, 'all streams destroyed')
  t.ok(errs.includes('ERR_YAMUX_SESSION_SHUTDOWN'), 'listeners learn why')
  t.equal(pair.client.numStreams, 0)
  t.ok(pair.client.isClosed && pair.server.isClosed)
  t.throws(() => pair.client.open(), { code: 'ERR_YAMUX_SESSION_SHUTDOWN' })
})

t.test('frames for a stream we already reset are discarded, not an error', async (t) => {
  const peer = rawPeer({ client: true, enableKeepAlive: false })
  const incoming = nextStream(peer.session)
  peer.send(frame(FrameType.WindowUpdate, Flag.SYN, 2, 0))
  const stream = await incoming
  stream.destroy()
  await peer.nextFrame((f) => f.streamId === 2 && (f.flags & Flag.RST) !== 0)
  peer.send(frame(FrameType.Data, 0, 2, 5, Buffer.from('late!')))
  peer.send(frame(FrameType.WindowUpdate, 0, 2, 1000))
  peer.send(frame(FrameType.Ping, Flag.SYN, 0, 7))
  await peer.nextFrame((f) => f.type === FrameType.Ping && f.length === 7)
  t.equal(peer.session.isClosed, false)
  peer.session.close()
})

t.test('a larger initialStreamWindow is announced with the SYN', async (t) => {
  const peer = rawPeer({ client: true, enableKeepAlive: false, initialStreamWindow: 1024 * 1024 })
  const stream = peer.session.open()
  const syn = await peer.nextFrame((f) => f.streamId === stream.id)
  t.equal(syn.type, FrameType.WindowUpdate)
  t.equal(syn.flags, Flag.SYN)
  t.equal(syn.length, 1024 * 1024 - INITIAL_STREAM_WINDOW)
  t.equal(stream.id % 2, 1, 'the client opens odd ids')
  peer.session.close()
})

t.test('config is validated', async (t) => {
  const [a] = duplexPair()
  t.throws(() => createSession(a, { client: true, initialStreamWindow: 1024 }), { code: 'ERR_YAMUX_INVALID_CONFIG' })
  t.throws(() => createSession(a, { client: true, maxStreamWindowSize: 1024 }), { code: 'ERR_YAMUX_INVALID_CONFIG' })
  t.throws(() => createSession(a, { client: true, acceptBacklog: 0 }), { code: 'ERR_YAMUX_INVALID_CONFIG' })
  t.throws(() => createSession(a, { client: true, keepAliveIntervalMs: -1 }), { code: 'ERR_YAMUX_INVALID_CONFIG' })
  a.destroy()
})

// Malformed input: every case ends the session with GoAway(protocol error) and a reason.

interface BadCase {
  name: string
  setup?: Buffer[]
  bad: Buffer
  code: string
}

const bodyOf = (n: number): Buffer => Buffer.alloc(n, 0x61)
const badVersion = frame(FrameType.Ping, Flag.SYN, 0, 1)
badVersion[0] = 1
const badType = frame(FrameType.Ping, Flag.SYN, 0, 1)
badType[1] = 9

const badCases: BadCase[] = [
  { name: 'bad version', bad: badVersion, code: 'ERR_YAMUX_INVALID_VERSION' },
  { name: 'unknown type', bad: badType, code: 'ERR_YAMUX_INVALID_MSG_TYPE' },
  { name: 'data for a stream never opened', bad: frame(FrameType.Data, 0, 4, 1, bodyOf(1)), code: 'ERR_YAMUX_UNKNOWN_STREAM' },
  { name: 'window update for a stream never opened', bad: frame(FrameType.WindowUpdate, 0, 3, 1), code: 'ERR_YAMUX_UNKNOWN_STREAM' },
  { name: 'stream frame on id 0', bad: frame(FrameType.Data, Flag.SYN, 0, 0), code: 'ERR_YAMUX_PROTOCOL' },
  {
    name: 'more data than the window',
    setup: [frame(FrameType.Data, Flag.SYN, 2, INITIAL_STREAM_WINDOW, bodyOf(INITIAL_STREAM_WINDOW))],
    bad: frame(FrameType.Data, 0, 2, 1, bodyOf(1)),
    code: 'ERR_YAMUX_RECV_WINDOW_EXCEEDED',
  },
  {
    name: 'a frame length larger than the window',
    bad: frame(FrameType.Data, Flag.SYN, 2, 0xffffffff),
    code: 'ERR_YAMUX_RECV_WINDOW_EXCEEDED',
  },
  {
    name: 'duplicate SYN',
    setup: [frame(FrameType.WindowUpdate, Flag.SYN, 2, 0)],
    bad: frame(FrameType.WindowUpdate, Flag.SYN, 2, 0),
    code: 'ERR_YAMUX_DUPLICATE_STREAM',
  },
  { name: 'SYN with our parity', bad: frame(FrameType.WindowUpdate, Flag.SYN, 3, 0), code: 'ERR_YAMUX_PROTOCOL' },
  {
    name: 'second FIN',
    setup: [frame(FrameType.WindowUpdate, Flag.SYN | Flag.FIN, 2, 0)],
    bad: frame(FrameType.WindowUpdate, Flag.FIN, 2, 0),
    code: 'ERR_YAMUX_UNEXPECTED_FLAG',
  },
  {
    name: 'data after FIN',
    setup: [frame(FrameType.WindowUpdate, Flag.SYN | Flag.FIN, 2, 0)],
    bad: frame(FrameType.Data, 0, 2, 1, bodyOf(1)),
    code: 'ERR_YAMUX_PROTOCOL',
  },
  {
    name: 'send window beyond 2^32-1',
    setup: [frame(FrameType.WindowUpdate, Flag.SYN, 2, 0)],
    bad: frame(FrameType.WindowUpdate, 0, 2, 0xffffffff),
    code: 'ERR_YAMUX_SEND_WINDOW_OVERFLOW',
  },
  { name: 'unknown GoAway code', bad: frame(FrameType.GoAway, 0, 0, 77), code: 'ERR_YAMUX_PROTOCOL' },
]

for (const c of badCases) {
  t.test(`protocol error: ${c.name}`, async (t) => {
    const peer = rawPeer({ client: true, enableKeepAlive: false })
    const errors: Error[] = []
    peer.session.on('error', (e) => errors.push(e))
    peer.session.on('stream', (s: Stream) => s.on('error', () => {}))
    for (const b of c.setup ?? []) peer.send(b)
    await sleep(5)
    t.equal(peer.session.isClosed, false, 'the setup is fine')
    peer.send(c.bad)
    const err = await closeReason(peer.session)
    t.equal(err?.code, c.code)
    t.ok(err instanceof YamuxError)
    t.same(
      errors.map((e) => (e as YamuxError).code),
      [c.code],
      "'error' emitted once to the listener",
    )
    const goAway = await peer.nextFrame((f) => f.type === FrameType.GoAway)
    t.equal(goAway.length, GoAwayCode.ProtocolError, 'GoAway(protocol error) sent')
  })
}

t.test('a protocol error with no error listener only closes the session', async (t) => {
  const peer = rawPeer({ client: true, enableKeepAlive: false })
  peer.send(badVersion)
  const err = await closeReason(peer.session)
  t.equal(err?.code, 'ERR_YAMUX_INVALID_VERSION')
})

t.test('GoAway(protocol error) from the peer closes the session with its reason', async (t) => {
  const peer = rawPeer({ client: true, enableKeepAlive: false })
  peer.send(frame(FrameType.GoAway, 0, 0, GoAwayCode.ProtocolError))
  const err = await closeReason(peer.session)
  t.equal(err?.code, 'ERR_YAMUX_REMOTE_PROTOCOL_ERROR')
})
