// ssh2 writes each SSH packet it sends in pieces (with AES-GCM three: the length, the
// ciphertext and the tag), and each write to a tunnel stream became a frame of its own.
// Corked for the rest of the tick, the pieces of every packet one tick produces reach the
// stream in one writev, which leaves in as few frames as its window allows (bench:copy,
// bench:ssh).

import type { Duplex } from 'node:stream'

/** From now on, the first write of each tick corks `stream` until the tick ends. */
export function corkEachTick(stream: Duplex): void {
  let corked = false
  const uncork = () => {
    corked = false
    stream.uncork()
  }
  const write = stream.write
  stream.write = function (this: Duplex, ...args: unknown[]): boolean {
    if (!corked) {
      corked = true
      stream.cork()
      process.nextTick(uncork)
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args)
  } as Duplex['write']
}
