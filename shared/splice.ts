// Joins two byte streams: each one's data goes to the other, an end is passed on (so a
// half-closed connection still gets its answer), and a failure on either side tears down
// both.

import type { Duplex } from 'node:stream'

export function splice(a: Duplex, b: Duplex): void {
  a.pipe(b)
  b.pipe(a)
  const destroyBoth = () => {
    a.destroy()
    b.destroy()
  }
  a.on('error', destroyBoth)
  b.on('error', destroyBoth)
  a.on('close', () => b.end())
  b.on('close', () => a.end())
}
