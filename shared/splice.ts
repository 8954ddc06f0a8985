// Joins two byte streams: each one's data goes to the other, an end is passed on (so a
// half-closed connection still gets its answer), and a failure on either side tears down
// both.
//
// What `pipe` does, with one difference: the destination is corked for the rest of the tick
// in which data arrives. A TLS socket delivers a 64 KiB read as four 16 KiB records in one
// tick, and a yamux stream hands on each piece of a frame as it comes; written one by one,
// each piece costs the destination a syscall (and, over TLS, a record and a syscall of its
// own). Corked, what one tick delivers leaves in a single writev.

import type { Duplex } from 'node:stream'

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
function forward(from: Duplex, to: Duplex): void {
  let corked = false
  let waiting = false
  const uncork = () => {
    corked = false
    to.uncork()
  }
  const resume = () => {
    waiting = false
    from.resume()
  }
  from.on('data', (chunk: Buffer) => {
    if (to.writableEnded || to.destroyed) return
    if (!corked) {
      corked = true
      to.cork()
      process.nextTick(uncork)
    }
    if (!to.write(chunk) && !waiting) {
      waiting = true
      from.pause()
      to.once('drain', resume)
    }
  })
  from.once('end', () => {
    if (!to.writableEnded && !to.destroyed) to.end()
  })
  from.resume()
}
