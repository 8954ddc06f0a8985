// A peer that sends past the channel window it was given, as patches/ssh2+1.17.0.patch
// makes ssh2 handle it: the excess is dropped, as OpenSSH drops it, so a channel whose reader
// stopped holds at most its buffer and its window. Without the patch a packet that overran a nearly full
// window left it negative, and every packet after it was taken without limit. Both ends are
// ssh2's: the node's SSH server (a user sends) and the web terminal's client in the proxy
// (a node sends).

import { generateKeyPairSync } from 'node:crypto'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Channel, ServerChannel } from 'ssh2'
import ssh2 from 'ssh2'
import t, { type Test } from 'tap'
import { openSshPrivateKey } from '../shared/ssh-key-file.ts'
import { until } from '../test/helpers/until.ts'

/** The window ssh2 gives a channel it accepts or opens. */
const WINDOW = 2 * 1024 * 1024

/** What ssh2 keeps of a channel: its Readable's state and its window. */
type Held = { readableLength: number; readableHighWaterMark: number; _readableState: { ended: boolean }; incoming: { window: number } }

/** Sends `bytes` on `channel`, then its EOF, as a peer that ignores the window would, in packets that leave no window at exactly zero. */
async function overrun(channel: Channel | ServerChannel, bytes: number): Promise<void> {
  ;(channel as unknown as { outgoing: { window: number } }).outgoing.window = 2 ** 30
  for (let sent = 0; sent < bytes; sent += 30_000) {
    if (!channel.write(Buffer.alloc(30_000))) await once(channel, 'drain')
  }
  channel.end()
}

/** A server and a client of ssh2, and both ends of an exec channel, neither read. */
async function stalledChannel(t: Test): Promise<{ server: ServerChannel; client: Channel }> {
  const hostKey = openSshPrivateKey(generateKeyPairSync('ed25519').privateKey)
  let serverEnd!: (channel: ServerChannel) => void
  const server = new Promise<ServerChannel>((resolve) => (serverEnd = resolve))
  const listener = new ssh2.Server({ hostKeys: [hostKey] }, (connection) => {
    connection.on('authentication', (context) => context.accept())
    connection.on('session', (accept) => accept().on('exec', (acceptExec) => serverEnd(acceptExec().pause())))
    connection.on('error', () => {})
  })
  listener.listen(0, '127.0.0.1')
  await once(listener, 'listening')
  const connection = new ssh2.Client()
  t.teardown(() => {
    connection.end()
    listener.close()
  })
  connection.connect({ host: '127.0.0.1', port: (listener.address() as AddressInfo).port, username: 'u', hostVerifier: () => true })
  await once(connection, 'ready')
  const client = await new Promise<Channel>((resolve, reject) => connection.exec('stalled', (error, channel) => (error ? reject(error) : resolve(channel.pause()))))
  return { server: await server, client }
}

/** Once the EOF after the data has come, everything before it has been taken or dropped. */
async function afterEof(t: Test, channel: Held, who: string): Promise<void> {
  await until('the EOF after the data', () => channel._readableState.ended, { timeoutMs: 30_000, everyMs: 20 })
  // ssh2 opens the window again until its Readable's buffer is full, then no more.
  const most = channel.readableHighWaterMark + WINDOW
  t.ok(channel.readableLength <= most, `the ${who} holds ${channel.readableLength} bytes, at most a full buffer and a window (${most})`)
  t.ok(channel.incoming.window >= 0, 'and its window never went below zero')
}

t.test('data past the window a server gave is dropped: a stalled channel holds at most its window', async (t) => {
  const { server, client } = await stalledChannel(t)
  await overrun(client, 8 * 1024 * 1024)
  await afterEof(t, server as unknown as Held, 'server')
})

t.test('data past the window a client gave is dropped likewise', async (t) => {
  const { server, client } = await stalledChannel(t)
  await overrun(server, 8 * 1024 * 1024)
  await afterEof(t, client as unknown as Held, 'client')
})

t.test("a peer that grants the largest window and reads nothing holds back the channel's writes, not memory", async (t) => {
  const hostKey = openSshPrivateKey(generateKeyPairSync('ed25519').privateKey)
  let transport!: { writableLength: number; destroy(): void }
  let serverEnd!: (channel: ServerChannel) => void
  const server = new Promise<ServerChannel>((resolve) => (serverEnd = resolve))
  const listener = new ssh2.Server({ hostKeys: [hostKey] }, (connection) => {
    transport = (connection as unknown as { _sock: typeof transport })._sock
    connection.on('authentication', (context) => context.accept())
    connection.on('session', (accept) => accept().on('exec', (acceptExec) => serverEnd(acceptExec())))
    connection.on('error', () => {})
  })
  listener.listen(0, '127.0.0.1')
  await once(listener, 'listening')
  const connection = new ssh2.Client()
  // Neither end would finish a clean close with the client's socket paused.
  t.teardown(() => {
    transport?.destroy()
    connection.destroy()
    listener.close()
  })
  connection.connect({ host: '127.0.0.1', port: (listener.address() as AddressInfo).port, username: 'u', hostVerifier: () => true })
  await once(connection, 'ready')
  const internals = connection as unknown as { _protocol: { channelWindowAdjust(id: number, bytes: number): void }; _sock: { pause(): void } }
  connection.exec('cat /dev/zero', (error, channel) => {
    if (error) throw error
    internals._protocol.channelWindowAdjust((channel as unknown as { outgoing: { id: number } }).outgoing.id, 2 ** 32 - 1 - WINDOW)
    internals._sock.pause()
  })
  const channel = await server
  // Writes as a pipe makes them, until the channel says to wait (or 256 MiB, were nothing to hold them back).
  const chunk = Buffer.alloc(64 * 1024)
  let written = 0
  let waiting = false
  const pump = () => {
    while (written < 256 * 1024 * 1024) {
      written += chunk.length
      if (!channel.write(chunk)) {
        waiting = true
        channel.once('drain', () => {
          waiting = false
          pump()
        })
        return
      }
    }
  }
  pump()
  await until('the channel to hold its writes back', () => waiting && transport.writableLength > 0, { timeoutMs: 20_000 })
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.ok(waiting, 'the writes still wait')
  t.ok(transport.writableLength <= 5 * 1024 * 1024, `the connection holds ${transport.writableLength} bytes unsent, not all that was written (${written})`)
})
