// Pacing over real TCP: streams that wait long for the peer's window tell the session its
// link is slow (and a transfer at loopback speed does not), and a paced session over a
// connection that drains slowly limits its backlog by the drain rate while every stream
// still delivers exactly what was written, and measures the queue on its path with pings
// while its output moves.

import type { Socket } from 'node:net'
import t from 'tap'
import { narrowTcpConnection, receiveHash, sendRandom, tcpPair } from '../../test/helpers/yamux.ts'
import { limitUnsentBytes, UNSENT_LIMIT_BYTES } from '../unsent-limit.ts'
import { INITIAL_STREAM_WINDOW } from './const.ts'
import { MIN_BACKLOG_BYTES, QUEUE_PROBE_MS } from './output-pacer.ts'
import { createSession, type Session } from './session.ts'
import type { Stream } from './stream.ts'

const MB = 1024 * 1024
/** Node's default highWaterMark for sockets: where a write returns false. */
const CONNECTION_MARK = 64 * 1024

function nextStream(session: Session): Promise<Stream> {
  return new Promise((resolve) => session.once('stream', resolve))
}

t.test('long waits for the window tell the session its link is slow', async (t) => {
  // The receiver's windows stay at their first size, so that every half window is a wait.
  const pair = await tcpPair({}, { maxStreamWindowSize: INITIAL_STREAM_WINDOW })
  t.teardown(pair.close)
  let slow = 0
  pair.client.on('slow', () => slow++)

  const fastRemote = nextStream(pair.server)
  const fast = pair.client.open()
  const fastGot = receiveHash(await fastRemote)
  const fastSent = await sendRandom(fast, 16 * MB, 64 * 1024, 1)
  t.equal((await fastGot).digest, fastSent)
  t.equal(slow, 0, 'not after 16 MiB at loopback speed')

  // A reader that takes what is buffered every 300 ms, as a link of under 1 MB/s would.
  const slowRemote = nextStream(pair.server)
  const stream = pair.client.open()
  const remote = await slowRemote
  const got = receiveHash(remote)
  remote.pause()
  let sending = true
  const reading = setInterval(() => {
    remote.resume()
    setTimeout(() => sending && remote.pause(), 5)
  }, 300)
  t.teardown(() => clearInterval(reading))
  // 16 windows: a busy machine may let a few windows through each time the reader wakes (its
  // 5 ms run late), and two waits are needed.
  const sent = await sendRandom(stream, 4 * MB, 64 * 1024, 2)
  sending = false
  clearInterval(reading)
  remote.resume()
  t.equal((await got).digest, sent)
  t.equal(slow, 1, 'told once')
})

/** A connection whose receiving end reads for 2 ms every `everyMs`: a link that drains slowly. */
async function throttledConnection(t: { teardown: (fn: () => void) => void }, everyMs: number): Promise<{ sender: Socket; receiver: Socket }> {
  const { sender, receiver } = await narrowTcpConnection(t)
  receiver.pause()
  const throttle = setInterval(() => {
    receiver.resume()
    setTimeout(() => receiver.pause(), 2)
  }, everyMs)
  t.teardown(() => clearInterval(throttle))
  return { sender, receiver }
}

/**
 * Sessions over a throttled connection (read every `everyMs`), the kernel's unsent queue kept
 * short and the client's output paced; what each stream the server accepts delivers.
 */
async function pacedSessions(t: { teardown: (fn: () => void) => void; equal: (found: unknown, wanted: unknown) => boolean }, everyMs: number) {
  const { sender, receiver } = await throttledConnection(t, everyMs)
  t.equal(await limitUnsentBytes(sender, UNSENT_LIMIT_BYTES), true)
  const client = createSession(sender, { client: true })
  const server = createSession(receiver, { client: false })
  t.teardown(() => {
    client.close()
    server.close()
  })
  client.paceOutput()
  const received = new Map<number, Promise<{ digest: string; bytes: number }>>()
  server.on('stream', (stream: Stream) => received.set(stream.id, receiveHash(stream)))
  return { sender, client, server, received }
}

t.test('a paced session limits its backlog by the drain rate, and loses nothing', async (t) => {
  const { client, received } = await pacedSessions(t, 40)
  const streams = [client.open(), client.open(), client.open()]
  const sizes = [3 * MB, 2 * MB, 64 * 1024]
  const sent = await Promise.all(streams.map((stream, i) => sendRandom(stream, sizes[i]!, i === 2 ? 200 : 64 * 1024, 10 + i)))
  for (const [i, stream] of streams.entries()) {
    const got = await received.get(stream.id)!
    t.same(got, { digest: sent[i], bytes: sizes[i] }, `stream ${stream.id} whole`)
  }
  const { pacing } = client.stats()
  t.ok(pacing.active)
  t.ok(pacing.drainRate !== null && pacing.drainRate < 10_000_000, `drained at ${pacing.drainRate} bytes/s`)
  t.ok(pacing.backlogLimit < 1024 * 1024, `the backlog limit came down to ${pacing.backlogLimit} bytes`)
})

t.test("over a slow link, less output waits than the connection's own mark, in frames no larger", async (t) => {
  // About 2 MB/s: 10 ms of it is about 20 KB.
  const { sender, client, received } = await pacedSessions(t, 100)
  // The connection's own mark (64 KiB, when a write returns false) is above the limit: only the
  // writer's own wait for an empty write's callback, and frames cut to the limit, keep what
  // waits below it.
  let peak = 0
  const sampling = setInterval(() => (peak = Math.max(peak, sender.writableLength)), 1)
  t.teardown(() => clearInterval(sampling))
  const streams = [client.open(), client.open()]
  const sizes = [768 * 1024, 32 * 1024]
  const sent = await Promise.all(streams.map((stream, i) => sendRandom(stream, sizes[i]!, i === 1 ? 200 : 256 * 1024, 20 + i)))
  clearInterval(sampling)
  for (const [i, stream] of streams.entries()) t.same(await received.get(stream.id)!, { digest: sent[i], bytes: sizes[i] }, `stream ${stream.id} whole`)
  const { pacing } = client.stats()
  t.ok(pacing.backlogLimit >= MIN_BACKLOG_BYTES && pacing.backlogLimit < CONNECTION_MARK, `limit ${pacing.backlogLimit} bytes, drained at ${pacing.drainRate} bytes/s`)
  t.ok(peak < CONNECTION_MARK, `at most ${peak} bytes waited for the connection`)
})

t.test('a paced session pings to measure its queue while its data moves, and not when idle', async (t) => {
  // About 2 MB/s: the copy below takes about 2 s.
  const { client, received } = await pacedSessions(t, 100)
  let keepAliveSamples = 0
  client.on('rtt', () => keepAliveSamples++)
  const stream = client.open()
  const sent = await sendRandom(stream, 4 * MB, 64 * 1024, 30)
  t.same(await received.get(stream.id)!, { digest: sent, bytes: 4 * MB })
  const duringCopy = client.stats().pacing.roundTrips
  t.ok(duringCopy >= 5, `${duringCopy} round trips measured the queue during the copy`)
  t.ok(keepAliveSamples <= 1, 'not as samples of the keepalive (its metric, window tuning)')
  await settled(client)
  const idle = client.stats().pacing.roundTrips
  await new Promise((resolve) => setTimeout(resolve, 10 * QUEUE_PROBE_MS))
  t.equal(client.stats().pacing.roundTrips, idle, 'no pings while nothing is written')
})

t.test("answering the peer's pings is not output moving: a paced end does not ping back for them", async (t) => {
  // Two paced ends would otherwise keep each other pinging for as long as the tunnel lasts.
  const { client, server, received } = await pacedSessions(t, 100)
  const stream = client.open()
  const sent = await sendRandom(stream, 1 * MB, 64 * 1024, 40)
  t.same(await received.get(stream.id)!, { digest: sent, bytes: 1 * MB })
  await settled(client)
  const idle = client.stats().pacing.roundTrips
  t.ok(idle > 0, 'the copy was measured')
  for (let i = 0; i < 5; i++) await server.ping()
  await new Promise((resolve) => setTimeout(resolve, 4 * QUEUE_PROBE_MS))
  t.equal(client.stats().pacing.roundTrips, idle)
})

/** Resolves once the session's queue probes have stopped: no round trip for 10 probe periods. */
async function settled(session: Session): Promise<void> {
  for (let last = -1; session.stats().pacing.roundTrips !== last; ) {
    last = session.stats().pacing.roundTrips
    await new Promise((resolve) => setTimeout(resolve, 10 * QUEUE_PROBE_MS))
  }
}
