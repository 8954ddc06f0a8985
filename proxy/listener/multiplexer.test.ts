// The multiplexer and TLS router over real sockets on 127.0.0.1.

import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { type AddressInfo, connect as netConnect, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { type ConnectionOptions, createSecureContext, type SecureContext, type TLSSocket, connect as tlsConnect } from 'node:tls'
import t, { type Test } from 'tap'
import { createLogger } from '../../shared/log.ts'
import { SSH_STREAM_MAGIC } from '../../shared/protocol/ssh-stream.ts'
import { TlsGate } from '../../shared/tls-gate/gate.ts'
import { createCA, createCertificate } from '../../shared/x509.ts'
import { Multiplexer, type MultiplexerOptions, type RoutedConnection } from './multiplexer.ts'
import { encodeProxyV1, encodeProxyV2 } from './proxy-protocol.ts'
import { createTlsRouter, NO_ALPN, type TlsRouterOptions } from './tls-router.ts'

// PKI: one cluster CA for the proxy and its nodes, and a stranger CA nobody trusts.
const HOUR = 3_600_000
const ca = createCA('Host CA', 'cluster')
const strangerCA = createCA('Stranger CA', 'elsewhere')

function issue(issuer: { key: KeyObject; certPem: string }, commonName: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const issuerCert = new X509Certificate(issuer.certPem)
  const fields = Object.fromEntries(issuerCert.subject.split('\n').map((line) => line.split('=')))
  const certPem = createCertificate({
    subject: { CN: commonName, O: 'cluster' },
    issuer: { CN: fields.CN, O: fields.O },
    publicKey,
    signingKey: issuer.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + HOUR),
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    extKeyUsage: ['serverAuth', 'clientAuth'],
  })
  return { cert: certPem, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
}

const proxyCert = issue(ca, 'proxy-1')
const rotatedProxyCert = issue(ca, 'proxy-1-rotated')
const nodeCert = issue(ca, 'node-1')
const strangerCert = issue(strangerCA, 'node-1')
const serverContext = createSecureContext({ ...proxyCert, ca: ca.certPem })

/** What a handler reports back to the client as its first line. */
interface HandlerReport {
  handler: string
  alpn: string | false | null
  tls?: string | null
  authorized?: boolean
  authorizationError?: unknown
  peerCert?: boolean
  clientAddress: string
  clientPort: number
  viaProxyHeader: boolean
  received?: string
}

function report(handler: string, conn: RoutedConnection, socket?: TLSSocket): HandlerReport {
  return {
    handler,
    alpn: socket ? socket.alpnProtocol : null,
    tls: socket?.getProtocol(),
    authorized: socket?.authorized,
    authorizationError: socket?.authorizationError,
    peerCert: socket ? socket.getPeerX509Certificate() !== undefined : undefined,
    clientAddress: conn.clientAddress,
    clientPort: conn.clientPort,
    viaProxyHeader: conn.viaProxyHeader,
  }
}

/** Reports, then echoes: proves the connection stays usable after the hand-over. */
function reportAndEcho(handler: string) {
  return (socket: TLSSocket, conn: RoutedConnection) => {
    socket.write(JSON.stringify(report(handler, conn, socket)) + '\n')
    socket.on('data', (data) => socket.write(data))
  }
}

/** A JSON logger whose entries the test reads as objects: tests assert levels and fields, not wording. */
function captureLog() {
  const entries: LogEntry[] = []
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n')) if (line) entries.push(JSON.parse(line) as LogEntry)
      callback()
    },
  })
  return { log: createLogger('test', { level: 'debug', format: 'json', stream }), entries }
}

type LogEntry = { level: string } & Record<string, unknown>

interface Harness {
  mux: Multiplexer
  port: number
  rejections: string[]
  entries: LogEntry[]
}

/** A multiplexer on 127.0.0.1 with TLS routed by ALPN; everything is closed at teardown. */
async function harness(t: Test, options: Partial<MultiplexerOptions> = {}, tlsOptions: Partial<TlsRouterOptions> = {}): Promise<Harness> {
  const { log, entries } = captureLog()
  const mux = new Multiplexer({ trustedLoadBalancers: [], ...options, log })
  mux.on(
    'tls',
    createTlsRouter({
      secureContext: () => serverContext,
      alpn: { 'warren-tunnel': reportAndEcho('tunnel'), 'http/1.1': reportAndEcho('web'), [NO_ALPN]: reportAndEcho('no-alpn') },
      log,
      ...tlsOptions,
    }),
  )
  const rejections: string[] = []
  mux.on('rejected', (reason, remoteAddress) => rejections.push(`${remoteAddress}: ${reason}`))
  const server = await mux.listen('127.0.0.1', 0)
  const sockets = new Set<Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  return { mux, port: (server.address() as AddressInfo).port, rejections, entries }
}

/** A TLS client that has finished its handshake, or the error that ended it. */
async function dialTls(port: number, options: ConnectionOptions = {}): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, ...options })
  socket.setEncoding('utf8')
  await once(socket, 'secureConnect')
  return socket
}

/** The next line the peer sends; what follows it stays in the socket for the next read. */
async function readLine(socket: TLSSocket | Socket): Promise<string> {
  let text = ''
  for (;;) {
    let chunk: string | Buffer | null
    while ((chunk = socket.read() as string | Buffer | null) !== null) {
      text += chunk
      const end = text.indexOf('\n')
      if (end !== -1) {
        if (end + 1 < text.length) socket.unshift(text.slice(end + 1))
        return text.slice(0, end)
      }
    }
    if (socket.readableEnded || socket.destroyed) throw new Error(`connection closed before a line; got ${JSON.stringify(text)}`)
    await new Promise<void>((resolve) => {
      const done = () => {
        socket.off('readable', done)
        socket.off('close', done)
        resolve()
      }
      socket.on('readable', done)
      socket.on('close', done)
    })
  }
}

async function readReport(socket: TLSSocket | Socket): Promise<HandlerReport> {
  return JSON.parse(await readLine(socket)) as HandlerReport
}

/** Resolves when the socket closes, however (events.once would reject on 'error'). */
function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()))
}

/** Sends `bytes` on a fresh TCP connection and resolves with all it receives until closed. */
async function sendRaw(port: number, ...pieces: Buffer[]): Promise<{ received: string; closedAfterMs: number }> {
  const socket = netConnect({ host: '127.0.0.1', port })
  const started = Date.now()
  let received = ''
  socket.on('data', (data) => (received += data))
  // The server may reset a connection it refuses while our bytes are still unread.
  socket.on('error', () => {})
  const done = closed(socket)
  socket.once('connect', () => {
    for (const piece of pieces) socket.write(piece)
  })
  // A server that never closes fails the caller's timing checks instead of hanging the test.
  const giveUp = setTimeout(() => socket.destroy(), 5000)
  await done
  clearTimeout(giveUp)
  return { received, closedAfterMs: Date.now() - started }
}

async function expectHandshakeFailure(t: Test, port: number, options: ConnectionOptions, code: string, message: string) {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, ...options })
  const [error] = (await Promise.race([once(socket, 'error'), once(socket, 'secureConnect').then(() => [undefined])])) as [Error & { code?: string }]
  socket.destroy()
  t.equal(error?.code, code, message)
}

t.test('TLS is routed by ALPN, with the client certificate left for the handler to judge', async (t) => {
  const { port } = await harness(t)

  const tunnel = await dialTls(port, { ALPNProtocols: ['warren-tunnel'], ...nodeCert })
  t.match(await readReport(tunnel), { handler: 'tunnel', alpn: 'warren-tunnel', tls: 'TLSv1.3', authorized: true, viaProxyHeader: false, clientAddress: '127.0.0.1' })
  tunnel.write('ping\n')
  t.equal(await readLine(tunnel), 'ping', 'the tunnel connection carries data after the hand-over')
  tunnel.destroy()

  const web = await dialTls(port, { ALPNProtocols: ['h2', 'http/1.1'] })
  t.match(await readReport(web), { handler: 'web', alpn: 'http/1.1', authorized: false, peerCert: false }, 'no certificate: connected, not authorized')
  web.destroy()

  const stranger = await dialTls(port, { ALPNProtocols: ['warren-tunnel'], ...strangerCert })
  t.match(await readReport(stranger), { handler: 'tunnel', authorized: false, peerCert: true, authorizationError: /^[A-Z_]+$/ }, 'a certificate from another CA is not authorized')
  stranger.destroy()

  const plain = await dialTls(port)
  t.match(await readReport(plain), { handler: 'no-alpn', alpn: false }, 'a client without ALPN reaches the no-ALPN handler')
  plain.destroy()
})

t.test('an unknown ALPN protocol is refused in the handshake', async (t) => {
  const { port, entries } = await harness(t)
  await expectHandshakeFailure(t, port, { ALPNProtocols: ['bogus'] }, 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL', 'alert no_application_protocol')
  t.ok(
    entries.some((entry) => entry.remote === '127.0.0.1' && JSON.stringify(entry.offered) === '["bogus"]'),
    'the refusal is logged with the protocols offered',
  )
})

t.test('TLS 1.2 is refused for warren-tunnel but serves the web', async (t) => {
  const { port } = await harness(t)
  await expectHandshakeFailure(
    t,
    port,
    { ALPNProtocols: ['warren-tunnel'], maxVersion: 'TLSv1.2', ...nodeCert },
    'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
    'tunnel over TLS 1.2 refused',
  )
  const web = await dialTls(port, { ALPNProtocols: ['http/1.1'], maxVersion: 'TLSv1.2' })
  t.match(await readReport(web), { handler: 'web', tls: 'TLSv1.2' }, 'TLS 1.2 still serves http/1.1')
  web.destroy()
  const downgraded = await dialTls(port, { ALPNProtocols: ['warren-tunnel', 'http/1.1'], maxVersion: 'TLSv1.2' })
  t.match(await readReport(downgraded), { handler: 'web' }, 'over TLS 1.2 the tunnel is not even chosen')
  downgraded.destroy()
})

t.test('client certificates can be left unrequested per protocol', async (t) => {
  const requested: string[] = []
  const { port } = await harness(
    t,
    {},
    {
      requestCert: (alpn) => {
        requested.push(alpn)
        return alpn === 'warren-tunnel'
      },
    },
  )
  const web = await dialTls(port, { ALPNProtocols: ['http/1.1'], ...nodeCert })
  t.match(await readReport(web), { handler: 'web', peerCert: false, authorized: false }, 'no certificate request: the client sends none')
  web.destroy()
  const tunnel = await dialTls(port, { ALPNProtocols: ['warren-tunnel'], ...nodeCert })
  t.match(await readReport(tunnel), { handler: 'tunnel', peerCert: true, authorized: true })
  tunnel.destroy()
  const plain = await dialTls(port, { ...nodeCert })
  t.match(await readReport(plain), { handler: 'no-alpn', peerCert: false })
  plain.destroy()
  t.ok(requested.includes('http/1.1') && requested.includes(NO_ALPN))
})

t.test('the secure context is taken per connection: rotation leaves live connections alone', async (t) => {
  let current: SecureContext = serverContext
  const { port } = await harness(t, {}, { secureContext: () => current })
  const before = await dialTls(port, { ALPNProtocols: ['warren-tunnel'], ...nodeCert })
  await readReport(before)
  t.match(before.getPeerX509Certificate()?.subject, /CN=proxy-1$/m)

  current = createSecureContext({ ...rotatedProxyCert, ca: ca.certPem })
  const after = await dialTls(port, { ALPNProtocols: ['warren-tunnel'], ...nodeCert })
  t.match(await readReport(after), { authorized: true })
  t.match(after.getPeerX509Certificate()?.subject, /CN=proxy-1-rotated$/m, 'the next connection gets the new certificate')
  before.write('still here\n')
  t.equal(await readLine(before), 'still here', 'the old connection keeps working')
  before.destroy()
  after.destroy()
})

t.test('plain HTTP reaches an http.Server, which answers; so does HTTPS through the router', async (t) => {
  const clientAddresses = new WeakMap<object, string>()
  const web = createHttpServer((req: IncomingMessage, res) => {
    let length = 0
    req.on('data', (chunk: Buffer) => (length += chunk.length))
    req.on('end', () => res.end(`${req.method} ${req.url} ${length} from ${clientAddresses.get(req.socket)}`))
  })
  const toWeb = (socket: Socket | TLSSocket, conn: RoutedConnection) => {
    clientAddresses.set(socket, conn.clientAddress)
    web.emit('connection', socket)
  }
  const { mux, port } = await harness(
    t,
    { trustedLoadBalancers: ['127.0.0.1'] },
    {
      alpn: { 'http/1.1': toWeb, [NO_ALPN]: toWeb },
    },
  )
  mux.on('http', (conn) => toWeb(conn.socket, conn))

  const post = (request: typeof httpRequest, extra: object) =>
    new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/echo?x=1', agent: false, ...extra }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk) => (body += chunk))
        res.on('end', () => resolve(body))
      })
      req.on('error', reject)
      // Larger than one read, so part of the body arrives after the hand-over.
      req.end(Buffer.alloc(300_000, 'x'))
    })
  t.equal(await post(httpRequest, {}), 'POST /v1/echo?x=1 300000 from 127.0.0.1', 'plain HTTP')
  t.equal(await post(httpsRequest as typeof httpRequest, { ca: ca.certPem }), 'POST /v1/echo?x=1 300000 from 127.0.0.1', 'HTTPS')

  // The same over a PROXY header: the server sees the whole request, the header not at all.
  const raw = await sendRaw(
    port,
    encodeProxyV1({ sourceAddress: '203.0.113.9', sourcePort: 40000, destinationAddress: '127.0.0.1', destinationPort: port }),
    Buffer.from('GET /behind-balancer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
  )
  t.match(raw.received, /^HTTP\/1\.1 200 OK[\s\S]*GET \/behind-balancer 0 from 203\.0\.113\.9$/)

  web.close()
})

/** An SSH-looking client: the handler answers with what it was told and what it read. */
function reportSsh(mux: Multiplexer): void {
  mux.on('ssh', (conn) => {
    conn.socket.once('data', (data) => {
      conn.socket.end(JSON.stringify({ ...report('ssh', conn), received: String(data) }) + '\n')
    })
  })
}

const SSH_HELLO = Buffer.from('SSH-2.0-Test_1.0\r\n')

t.test('PROXY v1 and v2 from a trusted address name the client', async (t) => {
  const { mux, port } = await harness(t, { trustedLoadBalancers: ['127.0.0.1'] })
  reportSsh(mux)
  const v4 = { sourceAddress: '198.51.100.7', sourcePort: 51000, destinationAddress: '10.0.0.1', destinationPort: 3080 }
  const v6 = { sourceAddress: '2001:db8::42', sourcePort: 52000, destinationAddress: '2001:db8::1', destinationPort: 3080 }

  for (const [name, header, expected] of [
    ['v1 TCP4', encodeProxyV1(v4), { clientAddress: '198.51.100.7', clientPort: 51000, viaProxyHeader: true }],
    ['v1 TCP6', encodeProxyV1(v6), { clientAddress: '2001:db8::42', clientPort: 52000, viaProxyHeader: true }],
    ['v2 TCP4', encodeProxyV2(v4), { clientAddress: '198.51.100.7', clientPort: 51000, viaProxyHeader: true }],
    ['v2 TCP6 with TLVs', encodeProxyV2(v6, [{ type: 0x05, value: Buffer.from('conn-id') }]), { clientAddress: '2001:db8::42', viaProxyHeader: true }],
    ['v1 UNKNOWN', encodeProxyV1(), { clientAddress: '127.0.0.1', viaProxyHeader: false }],
    ['v2 LOCAL (a health check)', encodeProxyV2(), { clientAddress: '127.0.0.1', viaProxyHeader: false }],
  ] as const) {
    const { received } = await sendRaw(port, Buffer.concat([header, SSH_HELLO]))
    t.match(JSON.parse(received), { handler: 'ssh', ...expected, received: SSH_HELLO.toString() }, name)
  }

  // The header in pieces, and the stream's first bytes in the same segment as its end.
  const header = encodeProxyV1(v4)
  const { received } = await sendRaw(port, header.subarray(0, 3), header.subarray(3, 20), Buffer.concat([header.subarray(20), SSH_HELLO.subarray(0, 2)]), SSH_HELLO.subarray(2))
  t.match(JSON.parse(received), { clientAddress: '198.51.100.7', received: /^SSH-2\.0-Test_1\.0/ }, 'split header')

  // TLS after a v2 header: the handshake and ALPN routing are unaffected.
  const raw = netConnect({ host: '127.0.0.1', port })
  await once(raw, 'connect')
  raw.write(encodeProxyV2(v6))
  const tunnel = await dialTls(port, { socket: raw, ALPNProtocols: ['warren-tunnel'], ...nodeCert })
  t.match(await readReport(tunnel), { handler: 'tunnel', authorized: true, clientAddress: '2001:db8::42', clientPort: 52000, viaProxyHeader: true })
  tunnel.destroy()
})

t.test('a PROXY header from an untrusted address is refused', async (t) => {
  const { mux, port, rejections, entries } = await harness(t, { trustedLoadBalancers: ['10.0.0.0/8'] })
  reportSsh(mux)
  const v4 = { sourceAddress: '198.51.100.7', sourcePort: 51000, destinationAddress: '10.0.0.1', destinationPort: 3080 }
  for (const header of [encodeProxyV1(v4), encodeProxyV2(v4)]) {
    const { received } = await sendRaw(port, Buffer.concat([header, SSH_HELLO]))
    t.equal(received, '', 'closed without an answer')
  }
  t.same(rejections, ['127.0.0.1: PROXY protocol header from untrusted address 127.0.0.1 refused', '127.0.0.1: PROXY protocol header from untrusted address 127.0.0.1 refused'])
  t.equal(entries.filter((entry) => entry.level === 'warn' && entry.remote === '127.0.0.1').length, 2, 'each refusal is a warning naming the address')

  // The refusal is about the header: the same client without one is served.
  const { received } = await sendRaw(port, SSH_HELLO)
  t.match(JSON.parse(received), { handler: 'ssh', clientAddress: '127.0.0.1', viaProxyHeader: false })
})

t.test('trusted balancers: a second header, a malformed one, or a missing required one is refused', async (t) => {
  const v4 = { sourceAddress: '198.51.100.7', sourcePort: 51000, destinationAddress: '10.0.0.1', destinationPort: 3080 }
  const { mux, port, rejections } = await harness(t, { trustedLoadBalancers: ['127.0.0.0/8'] })
  reportSsh(mux)
  await sendRaw(port, Buffer.concat([encodeProxyV1(v4), encodeProxyV2(v4), SSH_HELLO]))
  await sendRaw(port, Buffer.concat([encodeProxyV2(v4), encodeProxyV1(v4), SSH_HELLO]))
  await sendRaw(port, Buffer.from('PROXY TCP4 198.51.100.7 10.0.0.1 51000 99999\r\n'), SSH_HELLO)
  t.same(rejections, [
    '127.0.0.1: a second PROXY protocol header follows the first',
    '127.0.0.1: a second PROXY protocol header follows the first',
    '127.0.0.1: from load balancer 127.0.0.1: PROXY v1 header has an invalid port: "99999"',
  ])

  const strict = await harness(t, { trustedLoadBalancers: ['127.0.0.1'], requireProxyHeader: true })
  reportSsh(strict.mux)
  t.equal((await sendRaw(strict.port, SSH_HELLO)).received, '')
  t.same(strict.rejections, ['127.0.0.1: PROXY protocol header missing from load balancer 127.0.0.1'])
  const { received } = await sendRaw(strict.port, encodeProxyV1(v4), SSH_HELLO)
  t.match(JSON.parse(received), { clientAddress: '198.51.100.7' }, 'with the header it is served')
})

t.test('garbage is closed while a concurrent TLS connection keeps working', async (t) => {
  const { port, rejections } = await harness(t)
  const tunnel = await dialTls(port, { ALPNProtocols: ['warren-tunnel'], ...nodeCert })
  await readReport(tunnel)

  const garbage = [
    Buffer.from([0x00, 0xff, 0x13, 0x37, 0x42]),
    Buffer.from('HELLO there\r\n'),
    Buffer.from('get / HTTP/1.1\r\n'),
    Buffer.from([0x16, 0x01, 0x00]),
    Buffer.from('\r\n\r\n\x00\r\nQUIX'),
    Buffer.alloc(100_000, 0xaa),
  ]
  const results = await Promise.all(garbage.map((bytes) => sendRaw(port, bytes)))
  t.same(
    results.map((r) => r.received),
    garbage.map(() => ''),
    'every garbage connection closed unanswered',
  )
  t.equal(rejections.length, garbage.length)
  t.match(rejections[0], /unrecognised protocol/)

  tunnel.write('after the garbage\n')
  t.equal(await readLine(tunnel), 'after the garbage', 'the TLS connection is unaffected')
  const another = await dialTls(port, { ALPNProtocols: ['warren-tunnel'], ...nodeCert })
  t.match(await readReport(another), { handler: 'tunnel', authorized: true }, 'and the listener still accepts')
  another.destroy()
  tunnel.destroy()
})

t.test('a protocol without a handler, and a handler that throws, close only that connection', async (t) => {
  const { mux, port, rejections, entries } = await harness(t)
  t.equal((await sendRaw(port, SSH_HELLO)).received, '')
  t.same(rejections, ['127.0.0.1: no handler for ssh on this port'])
  // Refused as soon as the protocol is known, not after waiting for a whole first line.
  t.equal((await sendRaw(port, Buffer.from('WARREN-SSH', 'latin1'))).received, '')
  t.same(rejections, ['127.0.0.1: no handler for ssh on this port', '127.0.0.1: no handler for ssh-stream on this port'])
  mux.on('http', () => {
    throw new Error('handler bug')
  })
  t.equal((await sendRaw(port, Buffer.from('GET / HTTP/1.1\r\n\r\n'))).received, '')
  t.ok(
    entries.some((entry) => entry.level === 'error' && entry.protocol === 'http' && JSON.stringify(entry.error).includes('handler bug')),
    "the handler's error is logged as an error of the http handler",
  )
  const tunnel = await dialTls(port, { ALPNProtocols: ['warren-tunnel'], ...nodeCert })
  t.match(await readReport(tunnel), { handler: 'tunnel' })
  tunnel.destroy()
})

t.test('silent, dripping and stalled clients are cut off', async (t) => {
  const { port, rejections } = await harness(t, { trustedLoadBalancers: ['127.0.0.1'], sniffTimeoutMs: 300 }, { handshakeTimeoutMs: 300 })

  const silent = await sendRaw(port)
  t.ok(silent.closedAfterMs >= 250 && silent.closedAfterMs < 2000, `silent client closed after ${silent.closedAfterMs} ms`)
  t.same(rejections, ['127.0.0.1: protocol not known within 300 ms'])

  // A byte every 50 ms of a header that never ends in time: the deadline is not reset by progress.
  const socket = netConnect({ host: '127.0.0.1', port })
  socket.on('error', () => {})
  const started = Date.now()
  const header = encodeProxyV1({ sourceAddress: '198.51.100.7', sourcePort: 1, destinationAddress: '10.0.0.1', destinationPort: 2 })
  let sent = 0
  const drip = setInterval(() => {
    if (sent < header.length && !socket.destroyed) socket.write(header.subarray(sent, ++sent))
  }, 50)
  const giveUp = setTimeout(() => socket.destroy(), 5000)
  await closed(socket)
  clearTimeout(giveUp)
  clearInterval(drip)
  const dripMs = Date.now() - started
  t.ok(dripMs >= 250 && dripMs < 2000 && sent < header.length, `dripping client closed after ${dripMs} ms, ${sent} bytes in`)

  // Sniffed as TLS, then no whole ClientHello: the multiplexer closes it, no handshake starts.
  const stalled = await sendRaw(port, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]))
  t.ok(stalled.closedAfterMs >= 250 && stalled.closedAfterMs < 2000, `stalled ClientHello closed after ${stalled.closedAfterMs} ms`)
  t.equal(rejections.length, 3, 'the stalled ClientHello did not get past the multiplexer')
  t.match(rejections[2], /no whole ClientHello within 300 ms/)
})

t.test('a plain SSH stream is routed only once its whole first line is in, and an endless line is refused', async (t) => {
  const gate = new TlsGate({ log: captureLog().log })
  const { mux, port } = await harness(t, { sniffTimeoutMs: 300, gate })
  const routed: RoutedConnection[] = []
  mux.on('ssh-stream', (conn) => {
    routed.push(conn)
    // The handler reads the line itself, as the proxy's gateway does, and answers.
    conn.socket.once('readable', () => conn.socket.end(`got ${JSON.stringify(conn.socket.read()?.toString('latin1'))}`))
  })
  const line = Buffer.from(SSH_STREAM_MAGIC, 'latin1')

  const stalled = await sendRaw(port, line.subarray(0, 10))
  t.equal(stalled.received, '', 'a stream that stops inside its first line is closed unanswered')
  t.equal(routed.length, 0, 'and never reaches the handler, so it holds no handshake slot')
  t.equal(gate.stats.lateHelloClosed, 1, 'counted as late')

  const endless = await sendRaw(port, Buffer.from(`WARREN-${'x'.repeat(100)}`, 'latin1'))
  t.equal(endless.received, '', 'a first line longer than any version of it is closed unanswered')
  t.equal(routed.length, 0)
  t.equal(gate.stats.invalidHelloClosed, 1, 'counted as invalid')

  // Enough to sniff the protocol, then the rest of the line a moment later, then SSH's first bytes.
  const client = netConnect({ host: '127.0.0.1', port })
  client.on('error', () => {})
  await once(client, 'connect')
  client.write(line.subarray(0, 6))
  await sleep(100)
  t.equal(routed.length, 0, 'not routed while the line is incomplete')
  let received = ''
  client.on('data', (data) => (received += data))
  client.write(Buffer.concat([line.subarray(6), Buffer.from('SSH-2.0-x\r\n', 'latin1')]))
  await closed(client)
  t.equal(routed.length, 1, 'routed once the line is whole')
  t.ok(routed[0]!.head.subarray(0, line.length).equals(line), 'with the whole line at the front of its head')
  t.equal(received, `got ${JSON.stringify(`${SSH_STREAM_MAGIC}SSH-2.0-x\r\n`)}`, 'the handler reads every byte, the line first')
  t.equal(gate.stats.pendingHello, 0, 'nothing is left counted as waiting')
})

/** The first bytes a real TLS client (Node's) sends: its whole ClientHello. */
async function realClientHello(): Promise<Buffer> {
  const { createServer } = await import('node:net')
  const { scanClientHello } = await import('../../shared/tls-gate/client-hello.ts')
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const caught = new Promise<Buffer>((resolve) =>
    server.once('connection', (socket) => {
      let head = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        head = Buffer.concat([head, chunk])
        if (scanClientHello(head).state === 'complete') {
          socket.destroy()
          resolve(head)
        }
      })
    }),
  )
  const client = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ALPNProtocols: ['http/1.1'], rejectUnauthorized: false })
  client.on('error', () => {})
  const hello = await caught
  client.destroy()
  server.close()
  return hello
}

/**
 * A TCP connection that sends a whole ClientHello and then nothing, never finishing the
 * handshake: it holds a handshake slot until the handshake deadline.
 */
async function stalledHandshake(port: number): Promise<Socket> {
  const hello = await realClientHello()
  const socket = netConnect({ host: '127.0.0.1', port })
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(hello)
  return socket
}

t.test('a ClientHello split into a record per byte, sent a segment at a time, is refused once it has too many records', async (t) => {
  const gate = new TlsGate({ log: captureLog().log })
  const { port, rejections } = await harness(t, { gate })
  const hello = (await realClientHello()).subarray(5)
  const record = (fragment: Buffer) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, fragment.length]), fragment])
  // Each piece its own write: its own segment with Nagle off, as an attacker would send them.
  const pieces = Array.from({ length: hello.length }, (_, i) => record(hello.subarray(i, i + 1)))
  const refused = await sendRaw(port, ...pieces)
  t.equal(refused.received, '', 'no handshake answered')
  t.equal(gate.stats.invalidHelloClosed, 1, 'counted as no ClientHello')
  t.match(rejections.at(-1), /a ClientHello split into more than 16 records/)
})

t.test('handshakes beyond the limit wait their turn; beyond the queue they are closed at once', async (t) => {
  const { port, entries } = await harness(t, {}, { maxHandshakes: 2, handshakeQueue: 1, handshakeTimeoutMs: 600_000 })
  const stalled = [await stalledHandshake(port), await stalledHandshake(port)]
  t.teardown(() =>
    stalled.forEach((s) => {
      s.destroy()
    }),
  )
  await sleep(100)

  // Third in line: queued, its handshake not started while both slots are held.
  const queued = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, ALPNProtocols: ['http/1.1'] })
  queued.setEncoding('utf8')
  queued.on('error', () => {})
  let secured = false
  queued.once('secureConnect', () => (secured = true))
  await sleep(300)
  t.notOk(secured, 'no handshake while both slots are held')

  // Fourth: the queue is full, so the proxy closes it without a handshake. (The handshake
  // deadline is far beyond the test's own timeout: only shedding can close it in time.)
  const shed = await stalledHandshake(port)
  let received = 0
  shed.on('data', (d: Buffer) => (received += d.length))
  await closed(shed)
  t.equal(received, 0, 'closed without an answer')
  t.ok(
    entries.some((entry) => entry.level === 'warn' && entry.handshakes_running === 2 && entry.handshakes_waiting === 1),
    'the shedding is logged with the handshakes running and waiting',
  )

  // A slot frees: the queued client's handshake runs and it reaches its handler.
  stalled[0]!.destroy()
  await once(queued, 'secureConnect')
  t.equal((await readReport(queued)).handler, 'web', 'the queued client is served once a slot frees')
  queued.destroy()
})

t.test('a connection that waited too long for a handshake slot is closed', async (t) => {
  const { port } = await harness(t, {}, { maxHandshakes: 1, handshakeQueueWaitMs: 200, handshakeTimeoutMs: 600_000 })
  const stalled = await stalledHandshake(port)
  t.teardown(() => stalled.destroy())
  await sleep(100)
  const late = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, ALPNProtocols: ['http/1.1'] })
  const outcome = new Promise<string>((resolve) => {
    late.once('secureConnect', () => resolve('handshake'))
    late.once('error', () => resolve('closed'))
    late.once('close', () => resolve('closed'))
  })
  await sleep(500)
  stalled.destroy()
  t.equal(await outcome, 'closed', 'its turn came after the wait limit: closed, not served')
})

t.test('behind a trusted balancer, the limit on connections waiting for a ClientHello is per client address', async (t) => {
  const gate = new TlsGate({ maxPendingHelloPerAddress: 2, pendingHelloGraceMs: 0, log: captureLog().log })
  t.teardown(() => gate.close())
  const { port } = await harness(t, { trustedLoadBalancers: ['127.0.0.1'], gate }, { gate })
  /** A connection through the balancer for `client` that stops after the TLS record header. */
  const waiting = async (client: string) => {
    const socket = netConnect({ host: '127.0.0.1', port })
    socket.on('error', () => {})
    await once(socket, 'connect')
    socket.write(encodeProxyV2({ sourceAddress: client, sourcePort: 1000, destinationAddress: '10.0.0.1', destinationPort: 443 }))
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]))
    await sleep(50)
    return socket
  }
  const fromOne = [await waiting('198.51.100.7'), await waiting('198.51.100.7'), await waiting('198.51.100.7')]
  const fromAnother = [await waiting('203.0.113.9'), await waiting('203.0.113.9')]
  t.teardown(() =>
    [...fromOne, ...fromAnother].forEach((s) => {
      s.destroy()
    }),
  )
  t.ok(fromOne[0]!.destroyed, "the oldest of the first client's three was closed")
  t.notOk(fromOne[1]!.destroyed || fromOne[2]!.destroyed, 'its two newest wait')
  t.notOk(
    fromAnother.some((s) => s.destroyed),
    'the other client, through the same balancer, is not affected',
  )
  t.equal(gate.stats.helloPerAddressClosed, 1)
  t.equal(gate.stats.pendingHello, 4)
})

t.test('a client resuming a session takes a slot kept for it while others wait', async (t) => {
  const gate = new TlsGate({ maxHandshakes: 2, reservedForResumption: 1, handshakeTimeoutMs: 600_000, log: captureLog().log })
  t.teardown(() => gate.close())
  // Resuming a session that asked for a client certificate needs a session ID context (as the proxy sets).
  const resumable = createSecureContext({ ...proxyCert, ca: ca.certPem })
  ;(resumable.context as { setSessionIdContext(id: string): void }).setSessionIdContext('multiplexer-test')
  const { port } = await harness(t, { gate }, { gate, secureContext: () => resumable })
  const first = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, ALPNProtocols: ['http/1.1'] })
  const [ticket] = (await once(first, 'session')) as [Buffer]
  first.destroy()

  // The one slot open to everyone is held by a handshake that stalls after its ClientHello.
  const stalled = await stalledHandshake(port)
  t.teardown(() => stalled.destroy())
  await sleep(100)
  const fresh = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, ALPNProtocols: ['http/1.1'] })
  fresh.setEncoding('utf8')
  fresh.on('error', () => {})
  let freshSecured = false
  fresh.once('secureConnect', () => (freshSecured = true))
  await sleep(100)

  const returning = await dialTls(port, { ALPNProtocols: ['http/1.1'], session: ticket })
  t.equal((await readReport(returning)).handler, 'web', 'the client offering a ticket is served at once')
  t.notOk(freshSecured, 'while a client without one still waits')
  t.equal(gate.stats.resumingStarted, 1)
  returning.destroy()
  stalled.destroy()
  await once(fresh, 'secureConnect')
  t.equal((await readReport(fresh)).handler, 'web', 'which is served once the stalled handshake frees its slot')
  fresh.destroy()
})

t.test('a dial declined from its ALPN names is answered from its ClientHello, without a handshake slot', async (t) => {
  const { port, entries } = await harness(
    t,
    {},
    {
      maxHandshakes: 1,
      handshakeQueue: 1,
      handshakeQueueWaitMs: 600_000,
      handshakeTimeoutMs: 600_000,
      declines: (protocols) => (protocols.includes('held-here') ? 'held here' : undefined),
    },
  )
  // The one slot is held and the queue is full: only the early answer can reach the client.
  const stalled = [await stalledHandshake(port), await stalledHandshake(port)]
  t.teardown(() =>
    stalled.forEach((s) => {
      s.destroy()
    }),
  )
  await sleep(100)
  let secrets = 0
  const declined = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, ALPNProtocols: ['http/1.1', 'held-here'] })
  declined.on('keylog', () => secrets++)
  const error = await new Promise<string>((resolve) => {
    declined.once('secureConnect', () => resolve('connected'))
    declined.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
  })
  t.equal(error, 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL', 'the client reads the alert a declining TLS server sends')
  t.equal(secrets, 0, 'no key was derived')
  t.ok(
    entries.some((entry) => entry.declined === 'held here'),
    'the decline is logged with its reason',
  )
  t.notOk(
    entries.some((entry) => 'handshakes_waiting' in entry),
    'it was not shed as an overflow',
  )
})

t.test('the hand-over suits a consumer that attaches later, and a client that half-closes', async (t) => {
  const { mux, port } = await harness(t)
  mux.on('ssh', (conn) => {
    // Nothing reads for a while; bytes arriving meanwhile must wait, in order, behind the head.
    setTimeout(() => {
      let text = ''
      conn.socket.on('data', (data) => (text += data))
      // Answer a while after the client's FIN: the listener is half-open, so our side stays writable.
      conn.socket.on('end', () => {
        const answer = `${text.length} ${text.startsWith('SSH-2.0-Test_1.0\r\n') ? 'in order' : 'out of order'}`
        setTimeout(() => conn.socket.end(answer), 50)
      })
    }, 100)
  })
  const socket = netConnect({ host: '127.0.0.1', port })
  let received = ''
  socket.on('data', (data) => (received += data))
  await once(socket, 'connect')
  socket.write(SSH_HELLO)
  await sleep(20)
  socket.end(Buffer.alloc(200_000, 'y'))
  await closed(socket)
  t.equal(received, `${SSH_HELLO.length + 200_000} in order`)
})
