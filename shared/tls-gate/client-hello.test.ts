// The ClientHello scan over real ClientHellos from Node's TLS client: whole or not, over
// one record or several, and whether it offers a session ticket.

import { once } from 'node:events'
import { type AddressInfo, createServer } from 'node:net'
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls'
import t from 'tap'
import { selfSignedCertificate } from '../../test/helpers/self-signed-cert.ts'
import { MAX_HELLO_RECORDS, scanClientHello } from './client-hello.ts'

/** The whole first flight of a Node TLS client (its ClientHello), offering `session` if given. */
async function helloFrom(options: { session?: Buffer; alpn?: string[] } = {}): Promise<Buffer> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const caught = new Promise<Buffer>((resolve) =>
    server.once('connection', (socket) => {
      let head = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        head = Buffer.concat([head, chunk])
        if (head.length >= 5 && head.length >= 5 + head.readUInt16BE(3)) {
          socket.destroy()
          resolve(head)
        }
      })
    }),
  )
  const client = tlsConnect({
    host: '127.0.0.1',
    port: (server.address() as AddressInfo).port,
    rejectUnauthorized: false,
    ALPNProtocols: options.alpn,
    ...(options.session ? { session: options.session } : {}),
  })
  client.on('error', () => {})
  const hello = await caught
  client.destroy()
  server.close()
  return hello
}

/** A session ticket from a real TLS 1.3 server. */
async function ticket(): Promise<Buffer> {
  const server = createTlsServer(selfSignedCertificate(), (socket) => socket.end('hi'))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, rejectUnauthorized: false })
  client.on('data', () => {})
  const [session] = (await once(client, 'session')) as [Buffer]
  client.destroy()
  server.close()
  return session
}

t.test('a whole ClientHello: its ALPN names, and whether it resumes', async (t) => {
  const fresh = scanClientHello(await helloFrom({ alpn: ['warren-tunnel', 'http/1.1'] }))
  t.match(fresh, { state: 'complete', alpn: ['warren-tunnel', 'http/1.1'], resuming: false })
  const resuming = scanClientHello(await helloFrom({ session: await ticket() }))
  t.match(resuming, { state: 'complete', alpn: [], resuming: true }, 'a ClientHello offering a ticket (pre_shared_key) resumes')
})

t.test('not yet whole: a record header alone, or any cut of the hello', async (t) => {
  t.same(scanClientHello(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])), { state: 'incomplete' }, 'the slowloris: a 5-byte header announcing 512 bytes')
  const hello = await helloFrom()
  let incomplete = 0
  for (let n = 0; n < hello.length; n++) if (scanClientHello(hello.subarray(0, n)).state === 'incomplete') incomplete++
  t.equal(incomplete, hello.length, 'every truncation waits for more')
})

t.test('a ClientHello split over several records is whole once the last arrives', async (t) => {
  const hello = await helloFrom({ alpn: ['h2'] })
  const message = hello.subarray(5)
  const record = (fragment: Buffer) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, fragment.length >> 8, fragment.length & 0xff]), fragment])
  // Three records, the first too short even for the handshake header.
  const split = Buffer.concat([record(message.subarray(0, 2)), record(message.subarray(2, 100)), record(message.subarray(100))])
  t.equal(scanClientHello(split.subarray(0, split.length - 1)).state, 'incomplete')
  t.match(scanClientHello(split), { state: 'complete', alpn: ['h2'] })
})

t.test('a ClientHello split into more records than any client sends is refused', async (t) => {
  const hello = await helloFrom({ alpn: ['h2'] })
  const message = hello.subarray(5)
  const record = (fragment: Buffer) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, fragment.length >> 8, fragment.length & 0xff]), fragment])
  /** The message in `count` records: one byte each, the rest in the last. */
  const inRecords = (count: number) => Buffer.concat([...Array.from({ length: count - 1 }, (_, i) => record(message.subarray(i, i + 1))), record(message.subarray(count - 1))])
  t.match(scanClientHello(inRecords(MAX_HELLO_RECORDS)), { state: 'complete', alpn: ['h2'] }, `${MAX_HELLO_RECORDS} records: whole`)
  t.match(scanClientHello(inRecords(MAX_HELLO_RECORDS + 1)), { state: 'invalid', reason: `a ClientHello split into more than ${MAX_HELLO_RECORDS} records` })
  t.match(scanClientHello(inRecords(MAX_HELLO_RECORDS + 1).subarray(0, 6 * (MAX_HELLO_RECORDS + 1))), { state: 'invalid' }, 'refused before it is whole')
})

t.test('what can never become a ClientHello is refused at once', async (t) => {
  const hello = await helloFrom()
  const notHello = Buffer.from(hello)
  notHello[5] = 2 // a ServerHello
  t.match(scanClientHello(notHello), { state: 'invalid', reason: /instead of a ClientHello/ })
  const huge = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00]) // announces 64 KiB
  t.match(scanClientHello(huge), { state: 'invalid', reason: /ClientHello of 65536 bytes/ })
  const alert = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x02]), hello.subarray(5, 7), Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 2, 40])])
  t.match(scanClientHello(alert), { state: 'invalid', reason: /record of type 21/ })
  t.match(scanClientHello(Buffer.from([0x16, 0x03, 0x01, 0x48, 0x01])), { state: 'invalid', reason: /record of 18433 bytes/ })
})
