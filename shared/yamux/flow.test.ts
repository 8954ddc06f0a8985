// Flow control: windows re-open only as the reader consumes, a paused reader stops its
// sender with bounded memory on both sides, and windows auto-tune to the path.

import { createHash } from 'node:crypto'
import { type Duplex, duplexPair } from 'node:stream'
import t from 'tap'
import { frame, type PeerOptions, rawPeer, receiveHash, sendRandom, sleep, tcpPair, waitFor } from '../../test/helpers/yamux.ts'
import { Flag, FrameType, INITIAL_STREAM_WINDOW } from './const.ts'
import { createSession } from './session.ts'
import type { Stream } from './stream.ts'

const MB = 1024 * 1024

t.test('window updates follow consumption, not receipt', async (t) => {
  const peer = rawPeer({ client: true, enableKeepAlive: false })
  let stream: Stream | null = null
  peer.session.on('stream', (s: Stream) => (stream = s))
  const chunk = Buffer.alloc(16 * 1024, 0x5a)
  peer.send(frame(FrameType.WindowUpdate, Flag.SYN, 2, 0))
  for (let sent = 0; sent < INITIAL_STREAM_WINDOW; sent += chunk.length) {
    peer.send(frame(FrameType.Data, 0, 2, chunk.length, chunk))
  }
  await waitFor(() => stream !== null && stream.recvBuffered === INITIAL_STREAM_WINDOW, 2000, 'window filled')
  await sleep(50)
  const updates = (): number[] => peer.frames.filter((f) => f.streamId === 2 && f.type === FrameType.WindowUpdate && f.flags === 0).map((f) => f.length)
  t.same(updates(), [], 'nothing consumed: no window update, however much arrived')
  let read = 0
  stream!.on('data', (d: Buffer) => (read += d.length))
  await waitFor(() => read === INITIAL_STREAM_WINDOW, 2000, 'everything read')
  await sleep(20)
  const deltas = updates()
  t.ok(deltas.length >= 1, `window re-opened as the reader consumed (${deltas.join(', ')})`)
  t.ok(
    deltas.every((d) => d >= INITIAL_STREAM_WINDOW / 2),
    'each update covers at least half the window',
  )
  t.equal(
    deltas.reduce((a, b) => a + b, 0),
    INITIAL_STREAM_WINDOW,
    'and together exactly what was consumed',
  )
  peer.session.close()
})

t.test('a paused reader stops the sender; memory stays within the window; resuming completes', async (t) => {
  const pair = await tcpPair()
  const incoming = new Promise<Stream>((resolve) => pair.server.once('stream', resolve))
  const stream = pair.client.open()
  const remote = await incoming
  const total = 16 * MB
  const sent = sendRandom(stream, total, 64 * 1024, 7)

  // The receiver's bytes (its queue and the Readable's buffer) never exceed its window.
  let worst = 0
  const watch = setInterval(() => {
    worst = Math.max(worst, remote.recvBuffered + remote.readableLength - remote.recvWindow)
  }, 1)
  t.teardown(() => clearInterval(watch))

  const hash = createHash('sha256')
  let got = 0
  let paused = false
  const done = new Promise<void>((resolve) => remote.once('end', resolve))
  const checked = new Promise<void>((resolve) => {
    remote.on('data', (d: Buffer) => {
      hash.update(d)
      got += d.length
      if (!paused && got >= 2 * MB) {
        paused = true
        remote.pause()
        setTimeout(() => {
          const held = remote.recvBuffered + remote.readableLength
          t.ok(held <= remote.recvWindow, `receiver holds ${held} bytes with a window of ${remote.recvWindow}`)
          t.ok(pair.server.stats().bufferedBytes <= remote.recvWindow, 'session-wide too')
          t.equal(stream.sendWindow, 0, "the sender has used up the receiver's window")
          t.ok(stream.writableLength > 0, `the rest waits in the sender (${stream.writableLength} bytes)`)
          const before = got
          setTimeout(() => {
            t.equal(got, before, 'nothing delivered while paused')
            remote.resume()
            resolve()
          }, 50)
        }, 300)
      }
    })
  })
  await checked
  await done
  t.equal(got, total, 'everything arrived after resuming')
  t.equal(hash.digest('hex'), await sent, 'byte-exact')
  t.equal(worst <= 0, true, 'the receive queue never exceeded the window')
  await pair.close()
})

/** An in-memory link that delays every chunk by `delayMs` each way (RTT = 2 x delay). */
function slowLink(delayMs: number): [Duplex, Duplex] {
  const [a, aFar] = duplexPair()
  const [b, bFar] = duplexPair()
  aFar.on('data', (d: Buffer) => setTimeout(() => bFar.write(d), delayMs))
  bFar.on('data', (d: Buffer) => setTimeout(() => aFar.write(d), delayMs))
  return [a, b]
}

async function transferOverSlowLink(
  delayMs: number,
  bytes: number,
  receiver: PeerOptions,
  read: (s: Stream) => Promise<{ digest: string; bytes: number }> = receiveHash,
): Promise<{ stream: Stream; maxWindow: number }> {
  const [a, b] = slowLink(delayMs)
  const client = createSession(a, { client: true, enableKeepAlive: false })
  const server = createSession(b, { client: false, enableKeepAlive: false, ...receiver })
  await server.ping() // both sides know the round trip before the transfer starts
  await client.ping()
  const incoming = new Promise<Stream>((resolve) => server.once('stream', resolve))
  const stream = client.open()
  const remote = await incoming
  let maxWindow = 0
  const watch = setInterval(() => (maxWindow = Math.max(maxWindow, remote.recvWindow)), 1)
  const got = read(remote)
  const digest = await sendRandom(stream, bytes, 256 * 1024, 3)
  const result = await got
  clearInterval(watch)
  maxWindow = Math.max(maxWindow, remote.recvWindow)
  if (result.digest !== digest || result.bytes !== bytes) throw new Error('transfer corrupted')
  client.close()
  server.close()
  return { stream: remote, maxWindow }
}

t.test('auto-tuning: a fast reader on a long path grows the window up to the maximum', async (t) => {
  const { maxWindow } = await transferOverSlowLink(15, 48 * MB, {})
  t.ok(maxWindow >= 8 * MB, `window grew to ${maxWindow / MB} MiB`)
  t.ok(maxWindow <= 16 * MB, 'never beyond maxStreamWindowSize')
})

t.test('auto-tuning stops at maxStreamWindowSize', async (t) => {
  const { maxWindow } = await transferOverSlowLink(10, 8 * MB, { maxStreamWindowSize: 1 * MB })
  t.equal(maxWindow, 1 * MB)
})

t.test('auto-tuning: a slow reader keeps the initial window', async (t) => {
  // Take 16 KiB every 10 ms: a sixteenth of what the initial window allows on a 10 ms
  // round trip, so the reader, not the window, limits the stream.
  const slowReader = (s: Stream): Promise<{ digest: string; bytes: number }> =>
    new Promise((resolve) => {
      const hash = createHash('sha256')
      let bytes = 0
      const tick = setInterval(() => {
        const piece: Buffer | null = s.read(16 * 1024) ?? (s.readableEnded ? null : s.read())
        if (piece !== null) {
          hash.update(piece)
          bytes += piece.length
        }
      }, 10)
      s.once('end', () => {
        clearInterval(tick)
        resolve({ digest: hash.digest('hex'), bytes })
      })
    })
  const { maxWindow } = await transferOverSlowLink(5, 1 * MB, {}, slowReader)
  t.equal(maxWindow, INITIAL_STREAM_WINDOW, 'the reader, not the window, is the limit')
})

t.test('a stream that filled its window while waiting in the backlog gets no extra window', async (t) => {
  const peer = rawPeer({ client: true, enableKeepAlive: false })
  peer.send(frame(FrameType.Data, Flag.SYN, 2, INITIAL_STREAM_WINDOW, Buffer.alloc(INITIAL_STREAM_WINDOW, 1)))
  await waitFor(() => peer.session.stats().bufferedBytes === INITIAL_STREAM_WINDOW, 2000, 'window filled')
  const accepted = new Promise<Stream>((resolve) => peer.session.once('stream', resolve))
  const stream = await accepted
  const ack = await peer.nextFrame((f) => f.streamId === 2)
  t.equal(ack.flags, Flag.ACK)
  t.equal(ack.length, 0, 'the ACK grants nothing: the window is full of unread data')
  t.equal(stream.recvBuffered + stream.readableLength, INITIAL_STREAM_WINDOW)
  const closed = new Promise<Error | undefined>((resolve) => peer.session.once('close', resolve))
  peer.send(frame(FrameType.Data, 0, 2, 1, Buffer.alloc(1)))
  t.equal(((await closed) as { code?: string } | undefined)?.code, 'ERR_YAMUX_RECV_WINDOW_EXCEEDED')
})
