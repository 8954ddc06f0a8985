// Interoperability with yamux-js (the npm package), both ways round. yamux-js drops frames
// that TCP splits and misreads FIN, so the exchanges stay small and sequential and every
// reply is read by length rather than to its end.

import { randomBytes } from 'node:crypto'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import t from 'tap'
import { Client as JsClient, Server as JsServer } from 'yamux-js'
import { rng } from '../../test/helpers/yamux.ts'
import { createSession } from './session.ts'
import type { Stream } from './stream.ts'

/** Reads exactly `n` bytes from a stream in flowing mode. */
function readExactly(stream: Duplex, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let got = 0
    const onData = (d: Buffer): void => {
      parts.push(d)
      got += d.length
      if (got >= n) {
        stream.off('data', onData)
        stream.off('error', reject)
        stream.pause()
        resolve(Buffer.concat(parts))
      }
    }
    stream.on('data', onData)
    stream.once('error', reject)
    stream.resume()
  })
}

/** Sends messages of random size (under 4 KB) one at a time and checks each echo. */
async function echoRounds(stream: Duplex, rounds: number, seed: number): Promise<number> {
  const rand = rng(seed)
  let bytes = 0
  for (let i = 0; i < rounds; i++) {
    const msg = randomBytes(1 + rand(4000))
    stream.write(msg)
    const echo = await readExactly(stream, msg.length)
    if (!echo.equals(msg)) throw new Error(`round ${i}: echo differs (${echo.length} vs ${msg.length} bytes)`)
    bytes += msg.length
  }
  return bytes
}

async function listen(onSocket: (s: net.Socket) => void): Promise<{ port: number; server: net.Server }> {
  const server = net.createServer(onSocket)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, server }
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => resolve(sock))
    sock.once('error', reject)
  })
}

t.test('Warren client, yamux-js server: streams echo byte-exact; pings answered', async (t) => {
  const jsSessions: InstanceType<typeof JsServer>[] = []
  const { port, server } = await listen((sock) => {
    const js = new JsServer(
      (stream) => {
        stream.on('data', (d: Buffer) => stream.write(d))
        stream.on('error', () => {})
      },
      { enableKeepAlive: false, logger: () => {} },
    )
    js.on('error', () => {})
    jsSessions.push(js)
    sock.pipe(js).pipe(sock)
  })
  const sock = await connect(port)
  const session = createSession(sock, { client: true })
  const rtt = await session.ping()
  t.ok(rtt >= 0, `yamux-js answers pings (${rtt.toFixed(2)} ms)`)
  const streams = [session.open(), session.open(), session.open()]
  t.same(
    streams.map((s) => s.id),
    [1, 3, 5],
  )
  const totals = await Promise.all(streams.map((s, i) => echoRounds(s, 25, 10 + i)))
  t.ok(
    totals.every((n) => n > 0),
    `echoed ${totals.join(' + ')} bytes`,
  )

  // yamux-js must cope with our FINs and GoAway.
  for (const s of streams) s.end()
  t.equal(session.isClosed, false)
  session.close()
  await new Promise((r) => session.once('close', r))
  server.close()
})

t.test('yamux-js client, Warren server: streams echo byte-exact; its FIN ends our stream', async (t) => {
  const ended: number[] = []
  const { port, server } = await listen((sock) => {
    const session = createSession(sock, { client: false })
    session.on('stream', (s: Stream) => {
      s.on('data', (d: Buffer) => s.write(d))
      s.on('end', () => ended.push(s.id))
      s.on('error', () => {})
    })
  })
  const sock = await connect(port)
  const js = new JsClient({ enableKeepAlive: false, logger: () => {} })
  js.on('error', () => {})
  sock.pipe(js).pipe(sock)
  const streams = [js.open(), js.open(), js.open()]
  const totals = await Promise.all(streams.map((s, i) => echoRounds(s, 25, 20 + i)))
  t.ok(
    totals.every((n) => n > 0),
    `echoed ${totals.join(' + ')} bytes`,
  )
  for (const s of streams) s.close() // yamux-js sends FIN from close(), not from end()
  const deadline = Date.now() + 3000
  while (ended.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  t.same(
    ended.sort((a, b) => a - b),
    [1, 3, 5],
    'each FIN from yamux-js ended the matching stream',
  )
  js.close()
  sock.destroy()
  server.close()
})
