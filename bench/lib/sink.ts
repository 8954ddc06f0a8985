// The client's side of sink-server.ts: one-way transfers (to the server, from it) timed from
// the command to the last byte, and the switch to echo for round trips (measure.ts).

import type { Duplex } from 'node:stream'

const CHUNK = Buffer.alloc(64 * 1024, 0x5a)

function command(code: 'u' | 'd', length: number): Buffer {
  const bytes = Buffer.alloc(9)
  bytes.write(code)
  bytes.writeBigUInt64BE(BigInt(length), 1)
  return bytes
}

/** Resolves once `count` bytes have arrived (rejects if the stream fails or ends first). */
function receive(socket: Duplex, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let received = 0
    const onData = (data: Buffer) => {
      received += data.length
      if (received < count) return
      done()
      if (received > count) reject(new Error(`the server sent ${received - count} bytes more than asked`))
      else resolve()
    }
    const onEnd = () => {
      done()
      reject(new Error(`the stream ended after ${received} of ${count} bytes`))
    }
    const done = () => {
      socket.off('data', onData).off('error', reject).off('end', onEnd)
    }
    socket.on('data', onData).on('error', reject).on('end', onEnd)
  })
}

/** One byte there and back: the whole path is connected. */
export async function ping(socket: Duplex): Promise<void> {
  const answer = receive(socket, 1)
  socket.write('p')
  await answer
}

/** Sends `length` bytes; seconds from the command until the server said it has them all. */
export async function upload(socket: Duplex, length: number): Promise<number> {
  const started = performance.now()
  const answer = receive(socket, 1)
  socket.write(command('u', length))
  for (let sent = 0; sent < length; ) {
    const piece = length - sent >= CHUNK.length ? CHUNK : CHUNK.subarray(0, length - sent)
    sent += piece.length
    // A failed stream never drains: the answer's rejection ends the wait.
    if (!socket.write(piece)) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), answer])
  }
  await answer
  return (performance.now() - started) / 1000
}

/** Asks for `length` bytes; seconds from the command to the last byte. */
export async function download(socket: Duplex, length: number): Promise<number> {
  const started = performance.now()
  const arrived = receive(socket, length)
  socket.write(command('d', length))
  await arrived
  return (performance.now() - started) / 1000
}

/** From now on the server echoes all it gets. */
export function startEcho(socket: Duplex): void {
  socket.write('e')
}
