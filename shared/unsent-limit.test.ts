// TCP_NOTSENT_LOWAT set through perl on a live socket, plain and under TLS: read back from
// the kernel, and the kernel then takes far less of a write a paused reader leaves unread.

import { execFileSync } from 'node:child_process'
import { connect, createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls'
import t from 'tap'
import { selfSignedCertificate } from '../test/helpers/self-signed-cert.ts'
import { limitUnsentBytes, UNSENT_LIMIT_BYTES } from './unsent-limit.ts'

/** The socket's TCP_NOTSENT_LOWAT as the kernel reports it (getsockopt in perl, on a copy of its descriptor). */
function lowatOf(fd: number): number {
  const script = 'open(my $s, "+<&=3") or die; print unpack("i", getsockopt($s, 6, 25))'
  return Number(execFileSync('perl', ['-e', script], { stdio: ['ignore', 'pipe', 'inherit', fd] }).toString())
}

/** A connected pair on loopback whose server side never reads. */
async function pausedPair(t: { teardown: (fn: () => void) => void }): Promise<Socket> {
  const server = createServer((socket) => socket.pause())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const client = connect((server.address() as { port: number }).port, '127.0.0.1')
  await new Promise((resolve) => client.once('connect', resolve))
  t.teardown(() => {
    client.destroy()
    server.close()
  })
  return client
}

/** Writes 8 MiB at once and returns what the kernel took (the rest waits in libuv's queue). */
async function kernelTakes(socket: Socket): Promise<number> {
  const handle = (socket as unknown as { _handle: { writeQueueSize: number } })._handle
  const total = 8 * 1024 * 1024
  socket.write(Buffer.alloc(total))
  await sleep(200)
  return total - handle.writeQueueSize
}

t.test('a plain TCP socket', async (t) => {
  const limited = await pausedPair(t)
  const fd = (limited as unknown as { _handle: { fd: number } })._handle.fd
  t.equal(lowatOf(fd), 0, "not set: the system's default applies")
  t.equal(await limitUnsentBytes(limited, UNSENT_LIMIT_BYTES), true)
  t.equal(lowatOf(fd), UNSENT_LIMIT_BYTES, 'the kernel holds the limit')

  const plain = await pausedPair(t)
  const takenLimited = await kernelTakes(limited)
  const takenPlain = await kernelTakes(plain)
  t.ok(takenLimited * 2 < takenPlain, `the kernel took ${takenLimited} bytes with the limit, ${takenPlain} without`)
})

t.test('the TCP connection under a TLS socket', async (t) => {
  const server = tlsCreateServer(selfSignedCertificate(), (socket) => socket.pause())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const client = tlsConnect({ port: (server.address() as { port: number }).port, host: '127.0.0.1', rejectUnauthorized: false })
  await new Promise((resolve) => client.once('secureConnect', resolve))
  t.teardown(() => {
    client.destroy()
    server.close()
  })
  t.equal(await limitUnsentBytes(client, 4096), true)
  const fd = (client as unknown as { _handle: { _parent: { fd: number } } })._handle._parent.fd
  t.equal(lowatOf(fd), 4096)
})

t.test('a socket that is gone is refused, not thrown at', async (t) => {
  const socket = await pausedPair(t)
  socket.destroy()
  await new Promise((resolve) => socket.once('close', resolve))
  t.equal(await limitUnsentBytes(socket, UNSENT_LIMIT_BYTES), false)
})
