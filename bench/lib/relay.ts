// One hop of a minimal relay chain, for comparing stream layers in the tunnel benchmark
// without the rest of Warren:
//
//   client → TCP → entry (the proxy's place) → TLS 1.3 → exit (the agent's place) → TCP → echo
//
//   --mode=tls    a TLS connection per client connection, no multiplexer (the floor)
//   --mode=yamux  one TLS connection that the exit dials, one yamux stream per client (shared/yamux)
//   --mode=h2     the same with node:http2: the exit dials and serves h2, the entry is the h2
//                 client on the accepted connection, so the proxy's side opens the streams
//
//   node relay.ts --role=entry --mode=M [--exit-port=P]   (tls: the exit's port)
//   node relay.ts --role=exit  --mode=M --echo-port=P [--entry-port=P]   (yamux/h2: the entry's tunnel port)
//
// Announces {"port", "tunnelPort"?} (entry) or {"port"?, "ready"} (exit) when it can take traffic.

import http2 from 'node:http2'
import { type AddressInfo, createServer as createTcpServer, type Socket, connect as tcpConnect } from 'node:net'
import type { Duplex } from 'node:stream'
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from 'node:tls'
import { parseArgs } from 'node:util'
import { splice } from '../../shared/splice.ts'
import { createSession, type Session } from '../../shared/yamux/index.ts'
import { selfSignedCertificate } from '../../test/helpers/self-signed-cert.ts'
import { announce, exitWithParent } from './child.ts'

const { values } = parseArgs({
  options: {
    role: { type: 'string' },
    mode: { type: 'string' },
    'exit-port': { type: 'string' },
    'echo-port': { type: 'string' },
    'entry-port': { type: 'string' },
    // Stream window; the connection's is twice that. With 16 MiB stream windows node:http2
    // (Node 24.21) stalls for good under echo traffic here, whatever maxSessionMemory; 8 MiB does not.
    'h2-window': { type: 'string', default: String(8 * 1024 * 1024) },
  },
})
const HOST = '127.0.0.1'
const mode = values.mode
const h2Window = Number(values['h2-window'])
const H2_OPTIONS = { settings: { initialWindowSize: h2Window } }
process.on('SIGTERM', () => process.exit(0))
exitWithParent()

function listen(server: { listen(port: number, host: string, cb: () => void): unknown; address(): unknown }): Promise<number> {
  return new Promise((resolve) => server.listen(0, HOST, () => resolve((server.address() as AddressInfo).port)))
}

function toEcho(): Socket {
  const socket = tcpConnect({ host: HOST, port: Number(values['echo-port']) })
  socket.setNoDelay(true)
  return socket
}

if (values.role === 'exit' && mode === 'tls') {
  const server = createTlsServer({ ...selfSignedCertificate(), minVersion: 'TLSv1.3' }, (socket) => {
    socket.setNoDelay(true)
    splice(socket, toEcho())
  })
  announce({ port: await listen(server), ready: true })
} else if (values.role === 'entry' && mode === 'tls') {
  const server = createTcpServer((client) => {
    client.setNoDelay(true)
    const tunnel = tlsConnect({ host: HOST, port: Number(values['exit-port']), rejectUnauthorized: false, minVersion: 'TLSv1.3' })
    tunnel.setNoDelay(true)
    splice(client, tunnel)
  })
  announce({ port: await listen(server) })
} else if (values.role === 'entry') {
  // The tunnel arrives once; client connections wait for it.
  let opened!: (open: () => Duplex) => void
  const tunnel = new Promise<() => Duplex>((resolve) => (opened = resolve))
  const tunnels = createTlsServer({ ...selfSignedCertificate(), minVersion: 'TLSv1.3', ALPNProtocols: [mode === 'h2' ? 'h2' : 'bench'] }, (socket) => {
    socket.setNoDelay(true)
    if (mode === 'yamux') {
      const session: Session = createSession(socket, { client: false })
      session.on('error', () => {})
      opened(() => session.open())
    } else {
      const session = http2.connect('https://relay', { createConnection: () => socket, ...H2_OPTIONS })
      session.on('error', () => {})
      session.on('connect', () => {
        session.setLocalWindowSize(2 * h2Window)
        opened(() => session.request({ ':method': 'POST', ':path': '/' }, { endStream: false }))
      })
    }
  })
  const clients = createTcpServer(async (client) => {
    client.setNoDelay(true)
    splice(client, (await tunnel)())
  })
  announce({ port: await listen(clients), tunnelPort: await listen(tunnels) })
} else if (values.role === 'exit') {
  const socket: TLSSocket = tlsConnect({
    host: HOST,
    port: Number(values['entry-port']),
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3',
    ALPNProtocols: [mode === 'h2' ? 'h2' : 'bench'],
  })
  await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject))
  socket.setNoDelay(true)
  if (mode === 'yamux') {
    const session = createSession(socket, { client: true })
    session.on('error', () => {})
    session.on('stream', (stream: Duplex) => splice(stream, toEcho()))
  } else {
    const server = http2.createServer(H2_OPTIONS)
    server.on('session', (session) => session.once('localSettings', () => session.setLocalWindowSize(2 * h2Window)))
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200 })
      splice(stream, toEcho())
    })
    server.emit('connection', socket)
  }
  announce({ ready: true })
} else {
  throw new Error('usage: relay.ts --role=entry|exit --mode=tls|yamux|h2 ...')
}
