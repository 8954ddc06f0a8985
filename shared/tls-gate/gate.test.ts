// The gate in front of a real node:https server on loopback: connections that do not deliver
// a ClientHello are closed and never reach TLS, one address cannot keep others (or itself)
// out, and a handshake slot is held for the handshake only.

import { once } from 'node:events'
import { Agent, createServer, request as httpsRequest } from 'node:https'
import { type AddressInfo, connect as netConnect, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { selfSignedCertificate } from '../../test/helpers/self-signed-cert.ts'
import { until } from '../../test/helpers/until.ts'
import { createLogger } from '../log.ts'
import { TlsGate, type TlsGateOptions } from './gate.ts'

const credentials = selfSignedCertificate()
const quiet = createLogger('test', { level: 'error', stream: new Writable({ write: (_c, _e, done) => done() }) })

async function guarded(t: Test, options: TlsGateOptions) {
  const gate = new TlsGate({ log: quiet, ...options })
  const server = createServer({ ...credentials, handshakeTimeout: gate.config.handshakeTimeoutMs }, (_req, res) => res.end('ok'))
  gate.guard(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    gate.close()
    server.closeAllConnections()
    server.close()
  })
  return { gate, port: (server.address() as AddressInfo).port }
}

/** A GET from `localAddress`; the body, or the error's code. */
function get(port: number, localAddress = '127.0.0.1', agent: Agent | false = false): Promise<string> {
  return new Promise((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port, localAddress, rejectUnauthorized: false, agent }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve(body))
    })
    req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    req.end()
  })
}

/** A connection that sends the first 5 bytes of a TLS record announcing 512 bytes, then nothing. */
async function slowloris(port: number, localAddress: string): Promise<{ socket: Socket; closed: Promise<void> }> {
  const socket = netConnect({ host: '127.0.0.1', port, localAddress })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  await once(socket, 'connect')
  socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]))
  return { socket, closed }
}

t.test('a connection without a whole ClientHello is closed at the deadline, never reaching TLS', async (t) => {
  const { gate, port } = await guarded(t, { helloTimeoutMs: 300 })
  const stalled = await slowloris(port, '127.0.0.2')
  t.equal(await get(port, '127.0.0.2'), 'ok', 'a real client from the same address is served meanwhile')
  await stalled.closed
  t.equal(gate.stats.lateHelloClosed, 1, 'closed by the server, for a late ClientHello')
  t.equal(gate.stats.handshaking, 0, 'it never held a handshake slot')
  t.equal(gate.stats.pendingHello, 0)
})

t.test('one address holds only so many connections before their ClientHello: its oldest go first', async (t) => {
  const { gate, port } = await guarded(t, { maxPendingHelloPerAddress: 4, pendingHelloGraceMs: 0, helloTimeoutMs: 60_000 })
  const attack = []
  for (let i = 0; i < 6; i++) attack.push(await slowloris(port, '127.0.0.3'))
  await Promise.all([attack[0]!.closed, attack[1]!.closed])
  t.equal(gate.stats.helloPerAddressClosed, 2, 'the two oldest were closed')
  t.notOk(attack[5]!.socket.destroyed, 'the newest still waits')
  t.equal(await get(port, '127.0.0.3'), 'ok', 'a real client from the attacking address still gets in')
  t.equal(await get(port, '127.0.0.4'), 'ok', 'so does one from elsewhere')
  t.equal(gate.stats.helloPerAddressClosed, 3, 'its arrival closed the oldest waiting one')
  t.equal(gate.stats.pendingHello, 3)
  for (const { socket } of attack) socket.destroy()
})

t.test('connections younger than the grace period are not closed to make room: a burst from one NAT gets in', async (t) => {
  const { gate, port } = await guarded(t, { maxPendingHelloPerAddress: 2, pendingHelloGraceMs: 60_000, helloTimeoutMs: 60_000 })
  const waiting = []
  for (let i = 0; i < 5; i++) waiting.push(await slowloris(port, '127.0.0.6'))
  const served = await Promise.all(Array.from({ length: 5 }, () => get(port, '127.0.0.6')))
  t.same(served, ['ok', 'ok', 'ok', 'ok', 'ok'], 'five clients at once from that address are served')
  t.equal(gate.stats.helloPerAddressClosed, 0, "and nothing was closed for the address's limit")
  t.notOk(waiting.some(({ socket }) => socket.destroyed))
  for (const { socket } of waiting) socket.destroy()
})

t.test("a slot is held for the handshake only, not for the connection's life", async (t) => {
  const { gate, port } = await guarded(t, { maxHandshakes: 1 })
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => keepAlive.destroy())
  t.equal(await get(port, '127.0.0.1', keepAlive), 'ok', 'a first connection, kept open')
  t.equal(await get(port, '127.0.0.5'), 'ok', 'a second one gets the only slot')
  t.equal(await get(port, '127.0.0.1', keepAlive), 'ok', 'and the first still works')
  t.equal(gate.stats.handshaking, 0)
})

t.test('one address keeps only so many connections open; its next is closed at once, and other addresses are served', async (t) => {
  const { gate, port } = await guarded(t, { maxOpenPerAddress: 3 })
  const held = new Agent({ keepAlive: true, maxSockets: 3 })
  t.teardown(() => held.destroy())
  t.same(await Promise.all([1, 2, 3].map(() => get(port, '127.0.0.1', held))), ['ok', 'ok', 'ok'], 'three connections, kept open')
  t.equal(await get(port, '127.0.0.1'), 'ECONNRESET', 'a fourth from the same address is closed')
  t.equal(gate.stats.openPerAddressClosed, 1, 'for its address having its most open')
  t.equal(await get(port, '127.0.0.7'), 'ok', 'another address is served')
  t.equal(await get(port, '127.0.0.1', held), 'ok', 'the three still work')
  held.destroy()
  await t.resolves(
    until('the address to be served', () => get(port, '127.0.0.1').then((answer) => answer === 'ok'), { timeoutMs: 10_000 }),
    'once they are closed, the address is served again',
  )
})

t.test('guard refuses a server whose connections someone else handles too', async (t) => {
  const gate = new TlsGate({ log: quiet })
  t.teardown(() => gate.close())
  const server = createServer(credentials)
  server.on('connection', () => {})
  t.throws(() => gate.guard(server), /one 'connection' listener/)
})
