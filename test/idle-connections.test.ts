// Connections that complete their TLS handshake at the proxy's web port and then hold on:
// idle HTTP connections from one address, and a refused user connection whose client never
// closes its side. The listener bounds a connection only until its handshake; after it,
// each must still make its request in time, one address may hold only so many, and a
// refusal closes the connection whole. Against a real proxy process.

import { once } from 'node:events'
import { type ConnectionOptions, connect, type TLSSocket } from 'node:tls'
import t from 'tap'
import { HTTP_CONNECTION_LIMITS } from '../proxy/http-connections.ts'
import { USER_ALPN } from '../shared/protocol/tunnel.ts'
import { authAndProxy } from './helpers/cluster.ts'
import { healthStatus } from './helpers/health.ts'
import { until } from './helpers/until.ts'

t.setTimeout(120_000)

const { proxy } = await authAndProxy(t)
const at = proxy.web.lastIndexOf(':')
const host = proxy.web.slice(0, at)
const port = Number(proxy.web.slice(at + 1))

/** A TLS connection to the web port that sends nothing after its handshake. */
async function idle(alpn: string, allowHalfOpen = false): Promise<TLSSocket> {
  // allowHalfOpen is a net.Socket option that TLS's typings leave out; tls.connect passes it on.
  const socket = connect({ host, port, servername: 'warren-cluster', rejectUnauthorized: false, ALPNProtocols: [alpn], allowHalfOpen } as ConnectionOptions)
  socket.on('error', () => {})
  await once(socket, 'secureConnect')
  return socket
}

/** GET /v1/health on a connection of its own: its status, or the error that ended it. */
const health = () => healthStatus(host, port, { servername: 'warren-cluster' })

t.test('idle HTTP connections from one address are bounded in number and closed when they send no request', async (t) => {
  const { perAddress } = HTTP_CONNECTION_LIMITS
  const held: TLSSocket[] = []
  const closed = new Set<TLSSocket>()
  t.teardown(() => {
    for (const socket of held) socket.destroy()
  })
  for (let i = 0; i < perAddress; i++) {
    const socket = await idle('http/1.1')
    socket.once('close', () => closed.add(socket))
    held.push(socket)
  }
  t.equal(closed.size, 0, 'the control: the address may hold as many as its share')
  t.not(await health(), 200, 'one more from the address is closed unanswered while they are open')
  await until('every idle connection to be closed for sending no request', () => closed.size === perAddress, { timeoutMs: HTTP_CONNECTION_LIMITS.requestHeadersMs * 3 })
  t.equal(await health(), 200, 'once they are closed, the address is answered again')
})

t.test('a refused user connection is closed whole, also when the client never closes its side', async (t) => {
  const socket = await idle(USER_ALPN, true)
  let answer = ''
  socket.on('data', (data) => (answer += data))
  const ended = once(socket, 'end')
  socket.write('{"node":"pi-1"}\n')
  await ended
  t.match(answer, /"ok":false/, 'refused with an answer (no client certificate)')
  // Half-open, the proxy would read these for good; closed, it answers them with a reset,
  // which the next write here meets.
  await until(
    'the connection to be closed',
    () => {
      if (!socket.destroyed) socket.write('still here\n')
      return socket.destroyed
    },
    { timeoutMs: 10_000 },
  )
  t.ok(socket.destroyed, 'the proxy closed the connection, not just its half')
})
