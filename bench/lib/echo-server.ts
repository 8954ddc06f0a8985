// A TCP echo server in a process of its own, so that the client being measured does not
// share its event loop. Announces {"port"} and runs until it is killed.

import { type AddressInfo, createServer } from 'node:net'
import { announce, exitWithParent } from './child.ts'

const server = createServer((socket) => {
  socket.setNoDelay(true)
  socket.on('error', () => socket.destroy())
  socket.pipe(socket)
})
server.listen(0, '127.0.0.1', () => announce({ port: (server.address() as AddressInfo).port }))
process.on('SIGTERM', () => process.exit(0))
exitWithParent()
