// Pacing over real TCP: streams that wait long for the peer's window tell the session its
// link is slow (and a transfer at loopback speed does not), and a paced session over a
// connection that drains slowly limits its backlog by the drain rate while every stream
// still delivers exactly what was written.

import { execFileSync } from 'node:child_process'
import { connect, createServer, type Socket } from 'node:net'
import t from 'tap'
import { receiveHash, sendRandom, tcpPair } from '../../test/helpers/yamux.ts'
import { limitUnsentBytes, UNSENT_LIMIT_BYTES } from '../unsent-limit.ts'
import { INITIAL_STREAM_WINDOW } from './const.ts'
import { createSession, type Session } from './session.ts'
import type { Stream } from './stream.ts'

const MB = 1024 * 1024

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
  const sent = await sendRandom(stream, 1 * MB, 64 * 1024, 2)
  sending = false
  clearInterval(reading)
  remote.resume()
  t.equal((await got).digest, sent)
  t.equal(slow, 1, 'told once')
})

/**
 * A TCP connection whose receiving end reads for 2 ms every 40 ms, with a receive buffer held
 * at 64 KiB (set through perl, as shared/unsent-limit.ts sets its option) so that the kernel
 * cannot take megabytes in flight: a link that drains slowly.
 */
async function throttledConnection(t: { teardown: (fn: () => void) => void }): Promise<{ sender: Socket; receiver: Socket }> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
  const sender = connect((server.address() as { port: number }).port, '127.0.0.1')
  await new Promise((resolve) => sender.once('connect', resolve))
  const receiver = await accepted
  server.close()
  const fd = (receiver as unknown as { _handle: { fd: number } })._handle.fd
  // SOL_SOCKET 1, SO_RCVBUF 8.
  execFileSync('perl', ['-e', 'open(my $s, "+<&=3") or die; setsockopt($s, 1, 8, pack("i", 65536)) or die "$!"'], { stdio: ['ignore', 'inherit', 'inherit', fd] })
  receiver.pause()
  const throttle = setInterval(() => {
    receiver.resume()
    setTimeout(() => receiver.pause(), 2)
  }, 40)
  t.teardown(() => {
    clearInterval(throttle)
    sender.destroy()
    receiver.destroy()
  })
  return { sender, receiver }
}

t.test('a paced session limits its backlog by the drain rate, and loses nothing', async (t) => {
  const { sender, receiver } = await throttledConnection(t)
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
