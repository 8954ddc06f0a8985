// The web terminal's SSH client against a node that misbehaves: whatever its stream does, the
// terminal's shell is refused and the proxy runs on. Real sockets; the "node" is a TCP server
// that answers with a broken packet and then resets the connection (two errors in a row).

import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import t from 'tap'
import { openShell, terminalKey } from './ssh-shell.ts'

t.test('a broken packet and then a reset: refused once, and the second error is heard', async (t) => {
  const node = createServer((socket: Socket) => {
    socket.on('error', () => {})
    socket.write('SSH-2.0-OpenSSH_9.6\r\n')
    // A packet length far beyond what SSH allows: the client's first error.
    socket.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]))
    // Then a reset: the stream's own error, after the first.
    setTimeout(() => socket.resetAndDestroy(), 200)
  })
  node.listen(0, '127.0.0.1')
  await once(node, 'listening')
  t.teardown(() => node.close())
  const stream = connect((node.address() as { port: number }).port, '127.0.0.1')
  await once(stream, 'connect')
  const reset = new Promise((resolve) => stream.once('close', resolve))
  const key = terminalKey()
  await t.rejects(
    openShell({ stream, login: 'root', privateKey: key.privateKey, certificate: 'ssh-ed25519-cert-v01@openssh.com AAAA', hostKey: Buffer.alloc(0), cols: 80, rows: 24 }),
    'the shell is refused',
  )
  await reset
  // An unheard 'error' would have thrown out of the socket's event by now, failing this file.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.pass('the reset after the refusal was heard')
})
