// ALPN names read from real ClientHellos (Node's and OpenSSL's own client), and the
// decline alert compared with the bytes a real TLS server sends for the same refusal.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { type AddressInfo, createServer, connect as netConnect, type Server } from 'node:net'
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls'
import t, { type Test } from 'tap'
import { selfSignedCertificate } from '../../test/helpers/self-signed-cert.ts'
import { clientHelloAlpn, NO_APPLICATION_PROTOCOL_ALERT } from './client-hello.ts'

/** A listener that keeps the first TLS record a client sends, then hangs up. */
async function recordCatcher(t: Test): Promise<{ port: number; next: () => Promise<Buffer> }> {
  const caught: Buffer[] = []
  const waiters: ((b: Buffer) => void)[] = []
  const server: Server = createServer((socket) => {
    let head = Buffer.alloc(0)
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => {
      head = Buffer.concat([head, chunk])
      if (head.length >= 5 && head.length >= 5 + head.readUInt16BE(3)) {
        socket.destroy()
        const waiter = waiters.shift()
        if (waiter) waiter(head)
        else caught.push(head)
      }
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return {
    port: (server.address() as AddressInfo).port,
    next: () => (caught.length > 0 ? Promise.resolve(caught.shift()!) : new Promise((resolve) => waiters.push(resolve))),
  }
}

async function nodeHello(port: number, alpn?: string[], maxVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3'): Promise<void> {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'warren.test', ...(alpn ? { ALPNProtocols: alpn } : {}), maxVersion, rejectUnauthorized: false })
  socket.on('error', () => {})
  await new Promise((resolve) => socket.once('close', resolve))
}

t.test("the names Node's client offers, in order", async (t) => {
  const catcher = await recordCatcher(t)
  const names = ['warren-tunnel', 'warren-held:1a2b,3c4d', 'http/1.1']
  void nodeHello(catcher.port, names)
  t.same(clientHelloAlpn(await catcher.next()), names)
  void nodeHello(catcher.port, ['h2'], 'TLSv1.2')
  t.same(clientHelloAlpn(await catcher.next()), ['h2'], 'a TLS 1.2 ClientHello too')
  void nodeHello(catcher.port)
  t.same(clientHelloAlpn(await catcher.next()), [], 'no ALPN extension: no names')
})

t.test("the names OpenSSL's s_client offers", async (t) => {
  const catcher = await recordCatcher(t)
  const client = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${catcher.port}`, '-alpn', 'h2,warren-tunnel'], { stdio: ['pipe', 'ignore', 'ignore'] })
  t.teardown(() => client.kill())
  t.same(clientHelloAlpn(await catcher.next()), ['h2', 'warren-tunnel'])
})

t.test('anything short of a whole, well-formed ClientHello gives undefined, never an exception', async (t) => {
  const catcher = await recordCatcher(t)
  void nodeHello(catcher.port, ['warren-tunnel'])
  const hello = await catcher.next()
  t.same(clientHelloAlpn(hello), ['warren-tunnel'])
  let cut = 0
  for (let n = 0; n < hello.length; n++) if (clientHelloAlpn(hello.subarray(0, n)) === undefined) cut++
  t.equal(cut, hello.length, 'every truncation')
  t.equal(clientHelloAlpn(Buffer.from('GET / HTTP/1.1\r\n\r\n')), undefined, 'not TLS')
  const notHello = Buffer.from(hello)
  notHello[5] = 2 // a ServerHello's type
  t.equal(clientHelloAlpn(notHello), undefined, 'another handshake message')
  const lying = Buffer.from(hello)
  lying.writeUInt16BE(lying.readUInt16BE(3) - 1, 3) // the record ends one byte before the hello does
  t.equal(clientHelloAlpn(lying), undefined, 'a hello longer than its record')

  // Random corruption anywhere: an answer or undefined, never a throw.
  let seed = 7
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff
  let parsed = 0
  for (let i = 0; i < 20_000; i++) {
    const mutated = Buffer.from(hello)
    for (let k = 0; k < 1 + Math.floor(random() * 4); k++) mutated[Math.floor(random() * mutated.length)] = Math.floor(random() * 256)
    const names = clientHelloAlpn(mutated)
    if (names !== undefined) parsed++
    if (names !== undefined && !Array.isArray(names)) t.fail('not a list')
  }
  t.ok(parsed > 0, `${parsed} of 20000 mutated hellos still parsed (those whose damage missed the lengths)`)
})

t.test('the decline alert is the bytes a real TLS server sends when its ALPN callback declines', async (t) => {
  const catcher = await recordCatcher(t)
  void nodeHello(catcher.port, ['warren-tunnel'])
  const hello = await catcher.next()

  const { key, cert } = selfSignedCertificate()
  const server = createTlsServer({ key, cert, ALPNCallback: () => undefined })
  server.on('tlsClientError', () => {})
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const socket = netConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port })
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(hello)
  let answer = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => (answer = Buffer.concat([answer, chunk])))
  await new Promise((resolve) => socket.once('close', resolve))
  t.same([...answer], [...NO_APPLICATION_PROTOCOL_ALERT])
})
