// Fuzzing: over a million frames, valid and mutated (flipped header bits, random lengths,
// types, flags and ids, stray bytes), fed to sessions in random cuts. No exception may
// escape, every session must either close with a reason or stay usable, nothing may hang,
// and memory must stay bounded.

import { Duplex } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { rng } from '../../test/helpers/yamux.ts'
import { Flag, FrameType, GoAwayCode, HEADER_SIZE, YamuxError } from './const.ts'
import { encodeHeader } from './frame.ts'
import { createSession, type Session } from './session.ts'
import type { Stream } from './stream.ts'

const TARGET_FRAMES = 1_000_000
const TIME_BUDGET_MS = 25_000
const rand = rng(0x5eed)
const pool = Buffer.alloc(64 * 1024)
for (let i = 0; i < pool.length; i++) pool[i] = rand(256)

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** A connection whose far side is this test: we push bytes in, and its writes vanish. */
function fuzzWire(): Duplex & { written: number } {
  const wire = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      wire.written += chunk.length
      cb()
    },
    writev(chunks, cb) {
      for (const c of chunks) wire.written += (c.chunk as Buffer).length
      cb()
    },
  }) as Duplex & { written: number }
  wire.written = 0
  return wire
}

/**
 * Frames a well-behaved peer could send: it opens streams with increasing ids of its
 * parity, stays within the initial window of each, and sends nothing after FIN or RST.
 */
class FrameSource {
  nextId: number
  /** Open stream ids and the bytes sent on each. */
  open = new Map<number, number>()

  constructor(sessionIsClient: boolean) {
    this.nextId = sessionIsClient ? 2 : 1
  }

  /** An open stream's id, or -1 when none is open. */
  #pick(): number {
    if (this.open.size === 0) return -1
    const ids = [...this.open.keys()]
    return ids[rand(ids.length)]!
  }

  #openNew(): number {
    const id = this.nextId
    this.nextId += 2
    this.open.set(id, 0)
    if (this.open.size > 32) this.open.delete(this.open.keys().next().value!)
    return id
  }

  valid(): Buffer[] {
    const r = rand(100)
    let id = this.#pick()
    if (r < 10 || (id === -1 && r < 84)) {
      id = this.#openNew()
      if (rand(2) === 0) return [encodeHeader(FrameType.WindowUpdate, Flag.SYN, id, rand(2) ? 0 : rand(1 << 20))]
      return this.#data(id, Flag.SYN)
    }
    if (r < 65) return this.#data(id, 0)
    if (r < 78) return [encodeHeader(FrameType.WindowUpdate, 0, id, rand(1 << 18))]
    if (r < 84) {
      this.open.delete(id)
      return [encodeHeader(FrameType.WindowUpdate, rand(2) ? Flag.FIN : Flag.RST, id, 0)]
    }
    if (r < 99) return [encodeHeader(FrameType.Ping, rand(2) ? Flag.SYN : Flag.ACK, 0, rand(0x7fffffff))]
    return [encodeHeader(FrameType.GoAway, 0, 0, GoAwayCode.Normal)]
  }

  #data(id: number, syn: number): Buffer[] {
    const sent = this.open.get(id)!
    let len = rand(8) === 0 ? 0 : 1 + rand(rand(10) === 0 ? 60_000 : 2_000)
    len = Math.min(len, 256 * 1024 - sent) // never beyond the initial window
    const fin = rand(12) === 0 ? Flag.FIN : 0
    this.open.set(id, sent + len)
    if (fin) this.open.delete(id)
    const off = rand(pool.length - len)
    return [encodeHeader(FrameType.Data, syn | fin, id, len), pool.subarray(off, off + len)]
  }

  /** A valid frame with its header damaged. */
  mutated(): Buffer[] {
    const parts = this.valid()
    const header = Buffer.from(parts[0]!.subarray(0, Math.min(HEADER_SIZE, parts[0]!.length)))
    if (header.length < HEADER_SIZE) return parts
    switch (rand(9)) {
      case 7: // stray bytes that are not a frame at all
      case 8: {
        const n = 1 + rand(40)
        const off = rand(pool.length - n)
        return [pool.subarray(off, off + n)]
      }
      case 0: // flip one bit anywhere in the header
      case 1: {
        const bit = rand(HEADER_SIZE * 8)
        header[bit >> 3]! ^= 1 << (bit & 7)
        break
      }
      case 2: // random length (the body no longer matches)
        header.writeUInt32BE(rand(2) ? rand(1 << 16) : (rand(0x10000) * 0x10000 + rand(0x10000)) >>> 0, 8)
        break
      case 3: // random type, valid or not
        header[1] = rand(6)
        break
      case 4: // random flags
        header.writeUInt16BE(rand(0x10000), 2)
        break
      case 5: // random stream id
        header.writeUInt32BE(rand(3) === 0 ? rand(16) : (rand(0x10000) * 0x10000 + rand(0x10000)) >>> 0, 4)
        break
      case 6: // truncated header
        return [header.subarray(0, rand(HEADER_SIZE))]
    }
    return [header, ...parts.slice(1)]
  }
}

interface Outcome {
  closedBySelf: number
  closedByReason: Map<string, number>
  healthy: number
}

/** Runs one session through `frames` frames; returns once it has closed. */
async function fuzzSession(frames: number, mutationRate: number, outcome: Outcome, fail: (msg: string) => void): Promise<number> {
  const client = rand(2) === 0
  const wire = fuzzWire()
  const session: Session = createSession(wire, {
    client,
    enableKeepAlive: rand(4) === 0,
    keepAliveIntervalMs: 60_000,
    acceptBacklog: 1 + rand(8),
    maxStreamWindowSize: rand(2) ? 256 * 1024 : 1024 * 1024,
  })
  let closeReason: Error | undefined | null = null
  const closed = new Promise<void>((resolve) =>
    session.once('close', (err?: Error) => {
      closeReason = err
      resolve()
    }),
  )
  const streams: Stream[] = []
  if (rand(4) !== 0) {
    session.on('stream', (s: Stream) => {
      s.on('error', () => {})
      streams.push(s)
      switch (rand(5)) {
        case 0:
          s.resume() // a fast reader
          break
        case 1:
          s.destroy() // refuse it
          break
        case 2:
          s.end(pool.subarray(0, rand(30_000))) // answer and half-close
          break
        case 3:
          s.resume()
          s.write(pool.subarray(0, rand(300_000))) // more than a window: waits for updates
          break
        default: // a reader that never reads
      }
    })
  }
  if (rand(8) === 0) session.on('error', () => {})

  // Let the session start reading (Readable flowing mode begins on the next tick).
  await new Promise((r) => setImmediate(r))
  const source = new FrameSource(client)
  let fed = 0
  const batch: Buffer[] = []
  while (fed < frames && !session.isClosed) {
    batch.length = 0
    const n = Math.min(1 + rand(64), frames - fed)
    for (let i = 0; i < n; i++) {
      for (const part of rand(1000) < mutationRate ? source.mutated() : source.valid()) batch.push(part)
    }
    fed += n
    const bytes = Buffer.concat(batch)
    // Cut the batch at random points, down to single bytes now and then.
    let off = 0
    while (off < bytes.length && !session.isClosed) {
      const cut = rand(10) === 0 ? 1 + rand(16) : 1 + rand(bytes.length)
      const end = Math.min(bytes.length, off + cut)
      try {
        wire.push(bytes.subarray(off, end))
      } catch (err) {
        fail(`exception escaped the session: ${(err as Error).stack}`)
        session.close()
      }
      off = end
    }
    const stats = session.stats()
    if (stats.bufferedBytes > stats.streams * session.config.maxStreamWindowSize) {
      fail(`buffered ${stats.bufferedBytes} bytes over ${stats.streams} streams`)
    }
    for (const s of streams) {
      if (!s.destroyed && s.recvBuffered + s.readableLength > s.recvWindow) {
        fail(`stream ${s.id} holds ${s.recvBuffered + s.readableLength} bytes, window ${s.recvWindow}`)
      }
    }
    // Let replies, window updates and stream handlers run between batches.
    if (rand(4) === 0) await new Promise((r) => setImmediate(r))
  }

  if (session.isClosed) {
    await closed
    const reason = closeReason as Error | undefined | null
    if (reason !== undefined && reason !== null && !(reason instanceof YamuxError)) {
      fail(`closed with a foreign error: ${reason}`)
    }
    const key = reason instanceof YamuxError ? reason.code : 'clean'
    outcome.closedByReason.set(key, (outcome.closedByReason.get(key) ?? 0) + 1)
  } else {
    // Still healthy: it must still work (or refuse clearly after a GoAway) and close on request.
    outcome.healthy++
    try {
      session.open().destroy()
    } catch (err) {
      if ((err as YamuxError).code !== 'ERR_YAMUX_REMOTE_GO_AWAY' && (err as YamuxError).code !== 'ERR_YAMUX_STREAMS_EXHAUSTED') {
        fail(`healthy session cannot open a stream: ${err}`)
      }
    }
    session.close()
    const timeout = setTimeout(() => fail('session did not close when asked'), 2000)
    await closed
    clearTimeout(timeout)
    outcome.closedBySelf++
  }
  if (session.numStreams !== 0) fail(`closed session still holds ${session.numStreams} streams`)
  return session.stats().framesReceived
}

t.test(`${TARGET_FRAMES} random and mutated frames`, async (t) => {
  gc()
  const heapBefore = process.memoryUsage().heapUsed
  const outcome: Outcome = { closedBySelf: 0, closedByReason: new Map(), healthy: 0 }
  const failures: string[] = []
  const fail = (msg: string): void => {
    if (failures.length < 10) failures.push(msg)
  }
  const start = performance.now()
  let parsed = 0
  let sessions = 0
  let heapPeak = 0
  while (parsed < TARGET_FRAMES && performance.now() - start < TIME_BUDGET_MS) {
    // Mostly-valid traffic keeps sessions alive long enough to reach deep states;
    // heavily mutated traffic probes the error paths.
    const mutationRate = [0, 2, 10, 50, 300][rand(5)]!
    parsed += await fuzzSession(1 + rand(4000), mutationRate, outcome, fail)
    sessions++
    if (sessions % 200 === 0) heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed - heapBefore)
  }
  await new Promise((r) => setImmediate(r))
  gc()
  const heapAfter = process.memoryUsage().heapUsed - heapBefore
  const seconds = (performance.now() - start) / 1000
  t.comment(`${parsed} frames parsed in ${seconds.toFixed(1)} s over ${sessions} sessions`)
  t.comment(`closed on request while healthy: ${outcome.closedBySelf}`)
  t.comment(`closed with a reason: ${JSON.stringify(Object.fromEntries(outcome.closedByReason))}`)
  t.comment(`heap: peak +${(heapPeak / 1e6).toFixed(1)} MB, after +${(heapAfter / 1e6).toFixed(1)} MB`)
  t.same(failures, [], 'no escaped exception, bounded buffers, clean closes')
  t.ok(parsed >= TARGET_FRAMES, `at least ${TARGET_FRAMES} frames parsed (${parsed})`)
  t.ok(outcome.healthy > 0 && outcome.closedByReason.size > 3, 'both healthy and failed sessions were exercised')
  t.ok(heapPeak < 256e6, 'heap growth stayed bounded while fuzzing')
  t.ok(heapAfter < 32e6, 'nothing retained once the sessions are gone')
})
