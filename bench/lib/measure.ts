// What every path in the tunnel benchmark is measured with, over one connection to an echo
// server: bulk echo (large writes one way while the echo comes back the other) and the
// round trip of one small message at a time.

import type { Duplex } from 'node:stream'

export interface BulkResult {
  /** Bytes each way per second, in MB (10^6 bytes). */
  mbPerSecond: number
  seconds: number
}

export interface LatencyResult {
  p50Us: number
  p99Us: number
  meanUs: number
}

/**
 * Writes `totalBytes` in writes of `chunkBytes` (waiting for 'drain' when the socket asks)
 * while reading the echo, and times from the first write to the last echoed byte.
 */
export function bulkEcho(socket: Duplex, totalBytes: number, chunkBytes = 64 * 1024): Promise<BulkResult> {
  const chunk = Buffer.alloc(chunkBytes, 0x5a)
  return new Promise((resolve, reject) => {
    let received = 0
    let sent = 0
    const started = performance.now()
    const onData = (data: Buffer) => {
      received += data.length
      if (received < totalBytes) return
      socket.off('data', onData)
      socket.off('error', reject)
      const seconds = (performance.now() - started) / 1000
      resolve({ mbPerSecond: totalBytes / 1e6 / seconds, seconds })
    }
    socket.on('data', onData)
    socket.on('error', reject)
    const write = () => {
      while (sent < totalBytes) {
        const piece = totalBytes - sent >= chunkBytes ? chunk : chunk.subarray(0, totalBytes - sent)
        sent += piece.length
        if (!socket.write(piece)) {
          socket.once('drain', write)
          return
        }
      }
    }
    write()
  })
}

/** Sends `size` bytes, waits for all of them to come back, `count` times; percentiles of the round trips. */
export async function roundTrips(socket: Duplex, count: number, size = 64): Promise<LatencyResult> {
  return latencyOf(await roundTripTimes(socket, count, size))
}

/**
 * Sends `size` bytes, waits for all of them to come back, `count` times; each round trip's
 * time in µs. With `gapMs`, each send waits that long after the last answer, as a typist's
 * next key does: every process on the path has gone back to sleep, and on a virtual machine
 * its caches have gone cold, before the bytes arrive.
 */
export function roundTripTimes(socket: Duplex, count: number, size = 64, gapMs = 0): Promise<Float64Array> {
  const message = Buffer.alloc(size, 0x61)
  const samples = new Float64Array(count)
  return new Promise((resolve, reject) => {
    let index = 0
    let pending = 0
    let sentAt = 0n
    const send = () => {
      pending = size
      sentAt = process.hrtime.bigint()
      socket.write(message)
    }
    const onData = (data: Buffer) => {
      pending -= data.length
      if (pending > 0) return
      if (pending < 0) return fail(new Error(`the echo returned ${-pending} bytes more than were sent`))
      samples[index++] = Number(process.hrtime.bigint() - sentAt) / 1000
      if (index < count) return gapMs > 0 ? void setTimeout(send, gapMs) : send()
      socket.off('data', onData)
      socket.off('error', fail)
      resolve(samples)
    }
    const fail = (error: Error) => {
      socket.off('data', onData)
      reject(error)
    }
    socket.on('data', onData)
    socket.on('error', fail)
    send()
  })
}

/** Round trips on one path between switches in `interleavedRoundTrips`. */
const ROUND_TRIP_BATCH = 250

/**
 * `count` round trips on each of `paths`, in batches taken in turn (in the other order every
 * second turn), so that all paths are measured in the same seconds: this machine's speed
 * drifts within a run (other guests on the host), and a path measured after another saw a
 * different machine. `batch` runs one batch of `n` on the path at `index` and returns their
 * times; the result is each path's times, in the order of `paths`.
 */
export async function interleavedRoundTrips<P>(paths: readonly P[], count: number, batch: (path: P, n: number, index: number) => Promise<Float64Array>): Promise<Float64Array[]> {
  const times = paths.map(() => new Float64Array(count))
  const order = paths.map((_, index) => index)
  for (let done = 0; done < count; done += ROUND_TRIP_BATCH) {
    const n = Math.min(ROUND_TRIP_BATCH, count - done)
    for (const index of order) times[index]!.set(await batch(paths[index]!, n, index), done)
    order.reverse()
  }
  return times
}

/** Percentiles and mean of round trip times in µs (in any order). */
export function latencyOf(times: Float64Array): LatencyResult {
  const sorted = Float64Array.from(times).sort()
  let sum = 0
  for (const time of sorted) sum += time
  return { p50Us: percentile(sorted, 0.5), p99Us: percentile(sorted, 0.99), meanUs: sum / sorted.length }
}

function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
