// A TCP server for one-way transfers and round trips, in a process of its own (so the client
// being measured does not share its event loop). Each connection takes commands in turn, a
// byte each (see sink.ts for the client's side):
//
//   p            answers "p" (the connection reaches the server)
//   u LENGTH     reads LENGTH bytes (8 bytes, big-endian), then answers "k"
//   d LENGTH     writes LENGTH bytes
//   e            echoes every later byte
//
// Announces {"port"} and runs until it is killed.

import { type AddressInfo, createServer, type Socket } from 'node:net'
import { announce, exitWithParent } from './child.ts'

const CHUNK = Buffer.alloc(64 * 1024, 0x5a)
const EMPTY = Buffer.alloc(0)

/** Writes `length` bytes, waiting for 'drain' when the socket asks. */
function send(socket: Socket, length: number): void {
  let left = length
  const write = () => {
    while (left > 0) {
      const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left)
      left -= piece.length
      if (!socket.write(piece)) {
        socket.once('drain', write)
        return
      }
    }
  }
  write()
}

const server = createServer((socket) => {
  socket.setNoDelay(true)
  socket.on('error', () => socket.destroy())
  let pending = EMPTY // a command not complete yet
  let uploadLeft = 0
  let echo = false
  socket.on('data', (data: Buffer) => {
    if (echo) {
      socket.write(data)
      return
    }
    let rest = data
    while (rest.length > 0) {
      if (uploadLeft > 0) {
        const taken = Math.min(uploadLeft, rest.length)
        uploadLeft -= taken
        rest = rest.subarray(taken)
        if (uploadLeft === 0) socket.write('k')
        continue
      }
      const command = pending.length > 0 ? Buffer.concat([pending, rest]) : rest
      pending = EMPTY
      const code = String.fromCharCode(command[0]!)
      if (code === 'p') {
        socket.write('p')
        rest = command.subarray(1)
      } else if (code === 'e') {
        echo = true
        if (command.length > 1) socket.write(command.subarray(1))
        return
      } else if (code === 'u' || code === 'd') {
        if (command.length < 9) {
          pending = Buffer.from(command)
          return
        }
        const length = Number(command.readBigUInt64BE(1))
        rest = command.subarray(9)
        if (code === 'd') send(socket, length)
        else if (length === 0) socket.write('k')
        else uploadLeft = length
      } else {
        socket.destroy()
        return
      }
    }
  })
})
server.listen(0, '127.0.0.1', () => announce({ port: (server.address() as AddressInfo).port }))
process.on('SIGTERM', () => process.exit(0))
exitWithParent()
