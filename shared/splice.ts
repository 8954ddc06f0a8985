// Joins two byte streams: each one's data goes to the other, an end is passed on (so a
// half-closed connection still gets its answer), and a failure on either side tears down
// both.
//
// What `pipe` does, with two differences. The destination is corked until the event loop's
// check phase (setImmediate), so whatever the poll phase delivered leaves in one writev. A
// TLS socket hands on a read as one 16 KiB record per callback, each followed by its own
// nextTick queue, and a yamux stream hands on each piece of a frame as it comes: written one
// by one (or corked only until nextTick), each piece cost the destination a syscall. Only a
// small first piece of a loop turn (a keystroke, its echo, a request) is written at once,
// without waiting for the check phase. And the source is paused at a backlog of its own
// (BACKLOG_BYTES), not at the destination's mark, while the process's paused splices hold
// less than PARKED_BUDGET_BYTES together.

import type { Duplex, Readable, Writable } from 'node:stream'

/**
 * What the destination may hold before the source is paused. The streams' own mark (64 KiB)
 * is one socket read: pausing there stops and restarts reading (two epoll_ctl calls and a
 * loop turn) for every read, and each hop of a bulk copy sits idle while its neighbour
 * catches up. A larger backlog keeps every hop busy (`bench:ssh`: warren-port-listen, and
 * warren-ssh-fdpass through `agent/ssh-forwarding.ts`). It bounds what one direction of a
 * connection may hold, as a yamux stream's window bounds what it may receive.
 */
export const BACKLOG_BYTES = 1024 * 1024

/**
 * What the process's paused splices may hold together at BACKLOG_BYTES each. Past it, a
 * splice pauses at its destination's own mark: a user who opens many connections and reads
 * none (each destination full, each source paused) would otherwise make a proxy or a device
 * hold a backlog per connection, hundreds of MB; copies that flow never reach it.
 */
export const PARKED_BUDGET_BYTES = 32 * 1024 * 1024
/** What paused splices hold now, each counted as it paused until its destination drains or closes. */
let parkedBytes = 0

/**
 * A loop turn's first piece up to this size is written at once. Waiting for the check phase
 * cost a keystroke's round trip a few per cent (bench:copy interactive p50, bench:ssh p50);
 * writing every first piece at once, whatever its size, cost the TLS path's bulk copies more
 * (bench:ssh, warren-ssh: each hop then passed on a record alone and woke the next for it).
 * An SSH packet of typed text or its echo is far smaller; bulk pieces are records and reads
 * of 16 KiB and more. Results: bench/results/2026-12-05-splice-first-piece.md.
 */
export const SMALL_PIECE_BYTES = 1024

export function splice(a: Duplex, b: Duplex): void {
  forward(a, b)
  forward(b, a)
  const destroyBoth = () => {
    a.destroy()
    b.destroy()
  }
  a.on('error', destroyBoth)
  b.on('error', destroyBoth)
  a.on('close', () => b.end())
  b.on('close', () => a.end())
}

/** `from`'s data to `to`, with backpressure, and `from`'s end as `to`'s end. */
export function forward(from: Readable, to: Writable): void {
  let corked = false
  /** A piece came this loop turn: the next ones wait for its check phase. */
  let turnOpen = false
  let waiting = false
  const endTurn = () => {
    turnOpen = false
    if (!corked) return
    corked = false
    to.uncork()
  }
  /** What this splice's destination held when it paused, counted in parkedBytes. */
  let parked = 0
  const unpark = () => {
    parkedBytes -= parked
    parked = 0
  }
  const resume = () => {
    unpark()
    waiting = false
    from.resume()
  }
  to.once('close', unpark)
  from.on('data', (chunk: Buffer) => {
    if (to.writableEnded || to.destroyed) return
    if (!turnOpen) {
      turnOpen = true
      setImmediate(endTurn)
      if (chunk.length > SMALL_PIECE_BYTES) {
        corked = true
        to.cork()
      }
    } else if (!corked) {
      corked = true
      to.cork()
    }
    if (!to.write(chunk) && !waiting && (to.writableLength >= BACKLOG_BYTES || parkedBytes >= PARKED_BUDGET_BYTES)) {
      waiting = true
      parked = to.writableLength
      parkedBytes += parked
      from.pause()
      to.once('drain', resume)
    }
  })
  from.once('end', () => {
    if (!to.writableEnded && !to.destroyed) to.end()
  })
  from.resume()
}
