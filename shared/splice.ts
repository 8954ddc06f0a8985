// Joins two byte streams: each one's data goes to the other, an end is passed on (so a
// half-closed connection still gets its answer), and a failure on either side tears down
// both.
//
// What `pipe` does, with one difference: the destination is corked until the event loop's
// check phase (setImmediate), so whatever the poll phase delivered leaves in one writev. A
// TLS socket hands on a read as one 16 KiB record per callback, each followed by its own
// nextTick queue, and a yamux stream hands on each piece of a frame as it comes: written one
// by one (or corked only until nextTick), each piece cost the destination a syscall. The
// batch leaves before the loop waits again, so a lone small message is not delayed.

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
      setImmediate(uncork)
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
