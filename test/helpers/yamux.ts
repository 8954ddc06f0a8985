// Helpers shared by the yamux tests: connected session pairs, a raw peer that speaks
// frames by hand, and random traffic whose SHA-256 both ends can compare.

import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import { type Duplex, duplexPair } from 'node:stream'
import { encodeHeader, FrameParser } from '../../shared/yamux/frame.ts'
import { createSession, type Session, type SessionOptions } from '../../shared/yamux/session.ts'

export type PeerOptions = Omit<SessionOptions, 'client'>

export interface SessionPair {
  client: Session
  server: Session
  close(): Promise<void>
}

/**
 * A TCP connection on 127.0.0.1 whose receiving end's buffer is held at `receiveBuffer`
 * bytes (SO_RCVBUF, set through perl as shared/unsent-limit.ts sets its option), so that the
 * kernel cannot take megabytes in flight; closed at the test's end.
 */
export async function narrowTcpConnection(t: { teardown: (fn: () => void) => void }, receiveBuffer = 65536): Promise<{ sender: net.Socket; receiver: net.Socket }> {
  const listener = net.createServer()
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve))
  const sender = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1')
  await new Promise((resolve) => sender.once('connect', resolve))
  const receiver = await accepted
  listener.close()
  const fd = (receiver as unknown as { _handle: { fd: number } })._handle.fd
  // SOL_SOCKET 1, SO_RCVBUF 8.
  const script = 'open(my $s, "+<&=3") or die; setsockopt($s, 1, 8, pack("i", $ARGV[0])) or die "$!"'
  execFileSync('perl', ['-e', script, String(receiveBuffer)], { stdio: ['ignore', 'inherit', 'inherit', fd] })
  t.teardown(() => {
    sender.destroy()
    receiver.destroy()
  })
  return { sender, receiver }
}

/** Two sessions over a real TCP connection on 127.0.0.1 (ephemeral port). */
export async function tcpPair(clientOpts: PeerOptions = {}, serverOpts: PeerOptions = {}): Promise<SessionPair> {
  const listener = net.createServer()
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const port = (listener.address() as net.AddressInfo).port
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve))
  const clientSock = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => {
    clientSock.once('connect', resolve)
    clientSock.once('error', reject)
  })
  const serverSock = await accepted
  listener.close()
  const client = createSession(clientSock, { ...clientOpts, client: true })
  const server = createSession(serverSock, { ...serverOpts, client: false })
  return { client, server, close: () => closeAll(client, server) }
}

/** Two sessions over an in-memory duplex pair. */
export function memoryPair(clientOpts: PeerOptions = {}, serverOpts: PeerOptions = {}): SessionPair {
  const [a, b] = duplexPair()
  const client = createSession(a, { ...clientOpts, client: true })
  const server = createSession(b, { ...serverOpts, client: false })
  return { client, server, close: () => closeAll(client, server) }
}

async function closeAll(...sessions: Session[]): Promise<void> {
  await Promise.all(
    sessions.map((s) => {
      if (s.isClosed) return Promise.resolve()
      const closed = new Promise<void>((resolve) => s.once('close', () => resolve()))
      s.close()
      return closed
    }),
  )
}

export interface Frame {
  type: number
  flags: number
  streamId: number
  length: number
  body: Buffer
}

export function frame(type: number, flags: number, streamId: number, length: number, body?: Buffer): Buffer {
  const header = encodeHeader(type, flags, streamId, length)
  return body === undefined ? header : Buffer.concat([header, body])
}

/**
 * A session on one end of an in-memory pair and, on the other, a hand-driven peer: the
 * test writes raw bytes with `send` and reads the session's frames from `frames`.
 */
export function rawPeer(options: SessionOptions): {
  session: Session
  wire: Duplex
  frames: Frame[]
  send(bytes: Buffer): void
  nextFrame(match?: (f: Frame) => boolean): Promise<Frame>
} {
  const [mine, theirs] = duplexPair()
  const session = createSession(mine, options)
  const frames: Frame[] = []
  let waiters: (() => void)[] = []
  let current: Frame | null = null
  let parts: Buffer[] = []
  const parser = new FrameParser({
    onFrame(type, flags, streamId, length) {
      current = { type, flags, streamId, length, body: Buffer.alloc(0) }
      if (type !== 0) {
        frames.push(current)
        wake()
      }
    },
    onBody(piece) {
      parts.push(Buffer.from(piece))
    },
    onBodyEnd() {
      current!.body = Buffer.concat(parts)
      parts = []
      frames.push(current!)
      wake()
    },
  })
  const wake = (): void => {
    const w = waiters
    waiters = []
    for (const fn of w) fn()
  }
  theirs.on('data', (chunk: Buffer) => parser.push(chunk))
  theirs.on('error', () => {})
  let seen = 0
  return {
    session,
    wire: theirs,
    frames,
    send: (bytes) => {
      theirs.write(bytes)
    },
    async nextFrame(match = () => true) {
      for (;;) {
        while (seen < frames.length) {
          const f = frames[seen++]!
          if (match(f)) return f
        }
        await new Promise<void>((resolve) => waiters.push(resolve))
      }
    },
  }
}

/** A pool of random bytes; traffic is cut from it at random offsets. */
const pool = randomBytes(8 * 1024 * 1024)

/** Deterministic pseudo-random integers (xorshift32), so a failing run can be repeated. */
export function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1
  return (n: number) => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x % n
  }
}

/**
 * Writes `total` random bytes in writes of random sizes (1..maxWrite), honouring
 * backpressure, then ends the stream. Resolves to the SHA-256 of what was written.
 */
export async function sendRandom(stream: Duplex, total: number, maxWrite: number, seed: number): Promise<string> {
  const rand = rng(seed)
  const hash = createHash('sha256')
  let sent = 0
  while (sent < total) {
    const size = Math.min(1 + rand(maxWrite), total - sent)
    const offset = rand(pool.length - size)
    const piece = pool.subarray(offset, offset + size)
    hash.update(piece)
    sent += size
    if (!stream.write(piece)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => {
          stream.off('close', onClose)
          resolve()
        }
        const onClose = (): void => {
          stream.off('drain', onDrain)
          reject(new Error('stream closed while writing'))
        }
        stream.once('drain', onDrain)
        stream.once('close', onClose)
      })
    }
  }
  stream.end()
  return hash.digest('hex')
}

/** Reads a stream to its end; resolves to the SHA-256 and length of what arrived. */
export function receiveHash(stream: Duplex): Promise<{ digest: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    let bytes = 0
    stream.on('data', (chunk: Buffer) => {
      hash.update(chunk)
      bytes += chunk.length
    })
    stream.once('end', () => resolve({ digest: hash.digest('hex'), bytes }))
    stream.once('error', reject)
    stream.once('close', () => reject(new Error(`stream closed before its end (after ${bytes} bytes)`)))
  })
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves when `cond` holds, polling every few ms; rejects after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}
