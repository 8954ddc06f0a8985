// Repeated failed joins from one address are throttled; the refusal says when to retry.
// A try is charged when the request arrives, so slow or concurrent bodies buy no extra
// guesses, and behind a proxy the bucket is the real client's (per /64 for IPv6).

import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { connect as tcpConnect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect as tlsConnect } from 'node:tls'
import t from 'tap'
import { parseHostPort } from '../shared/address.ts'
import { ApiClient } from '../shared/api-client.ts'
import { generateJoinKeys, joinCluster, signedJoinBody } from '../shared/join.ts'
import { AuthProcess, ProxyProcess } from './helpers/cluster.ts'

const BURST = 3
const auth = new AuthProcess({ authServiceYaml: `  join_rate_limit: { burst: ${BURST}, per_minute: 1 }` })
let proxy: ProxyProcess
t.before(async () => {
  await auth.start()
  const pin = await auth.pin()
  // Believes PROXY headers from 127.0.0.1, where this test's connections come from.
  proxy = new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: '  trusted_load_balancers: ["127.0.0.1"]\n' })
  await proxy.start()
})
t.teardown(async () => {
  await proxy?.stop()
  await auth.stop()
})

/** A join request as an agent sends it (a fresh challenge, signed), with a token that is not valid. */
async function wrongJoinBody(): Promise<string> {
  const client = new ApiClient({ server: auth.address })
  try {
    const { nonce } = await client.request<{ nonce: string }>('POST', '/v1/join/challenge', {})
    return JSON.stringify(signedJoinBody('test-cluster', nonce, { token: `wrong-token-${randomUUID()}`, nodename: 'guesser', roles: ['node'] }, generateJoinKeys()))
  } finally {
    await client.close()
  }
}

interface RawJoin {
  /** Resolves with the response's status code. */
  status: Promise<number>
  /** Sends the body (the headers went at once). */
  sendBody(): void
}

/**
 * A POST /v1/join over its own TLS connection, written by hand so that the body can follow
 * the headers much later. `proxyHeader` is sent before TLS, as a load balancer would.
 */
async function rawJoin(server: string, body: string, options: { localAddress?: string; proxyHeader?: Buffer; headers?: Record<string, string> } = {}): Promise<RawJoin> {
  const { host, port } = parseHostPort(server, 0)
  const tcp = tcpConnect({ host, port, localAddress: options.localAddress })
  await once(tcp, 'connect')
  if (options.proxyHeader) tcp.write(options.proxyHeader)
  const socket = tlsConnect({ socket: tcp, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], servername: 'cluster.warren.invalid' })
  await once(socket, 'secureConnect')
  let received = ''
  const status = new Promise<number>((resolve, reject) => {
    socket.on('data', (chunk) => {
      received += chunk
      const match = /^HTTP\/1\.1 (\d{3}) /.exec(received)
      if (match) {
        resolve(Number(match[1]))
        socket.destroy()
      }
    })
    socket.on('error', reject)
    socket.on('close', () => reject(new Error(`connection closed before a response: ${JSON.stringify(received)}`)))
  })
  status.catch(() => {})
  const extra = Object.entries(options.headers ?? {})
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')
  socket.write(`POST /v1/join HTTP/1.1\r\nhost: warren\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n`)
  return { status, sendBody: () => socket.write(body) }
}

async function joinOnce(server: string, options: Parameters<typeof rawJoin>[2] = {}): Promise<number> {
  const request = await rawJoin(server, await wrongJoinBody(), options)
  request.sendBody()
  return request.status
}

t.test('the fourth failure in a burst of three is refused with 429, even with a valid token', async (t) => {
  const pin = await auth.pin()
  const attempt = (token: string) => joinCluster({ authServer: auth.address, token, caPins: [pin], nodename: 'guesser', roles: ['node'] })
  for (let i = 0; i < 3; i++) {
    await t.rejects(attempt(`wrong-token-guess-${i}-padding`), /token expired or not found/)
  }
  await t.rejects(attempt('wrong-token-guess-3-padding'), /too many join attempts from 127\.0\.0\.1 \(failed or still under way\); try again in \d+s/)
  const { token } = await auth.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 60_000 })
  await t.rejects(attempt(token), /too many join attempts/, 'the address is locked out until the bucket refills')
})

t.test('bodies sent 1.2 s after their headers: of 40 concurrent wrong tokens only the burst is evaluated', async (t) => {
  const requests = await Promise.all(Array.from({ length: 40 }, async () => rawJoin(auth.address, await wrongJoinBody(), { localAddress: '127.0.0.2' })))
  await sleep(1200)
  for (const request of requests) request.sendBody()
  const statuses = await Promise.all(requests.map((r) => r.status))
  const throttled = statuses.filter((status) => status === 429).length
  t.equal(statuses.length - throttled, BURST, `only ${BURST} tokens were evaluated (403), not ${statuses.length - throttled}`)
  t.equal(throttled, 40 - BURST, 'every other request was refused with 429 before its token was read')
})

t.test('x-warren-client-addr from a caller without a proxy certificate is ignored', async (t) => {
  t.equal(await joinOnce(auth.address, { localAddress: '127.0.0.2', headers: { 'x-warren-client-addr': '192.0.2.200' } }), 429, 'still the throttled 127.0.0.2')
  t.equal(await joinOnce(auth.address, { localAddress: '127.0.0.3', headers: { 'x-warren-client-addr': '127.0.0.2' } }), 403, 'its own, fresh bucket')
})

t.test('behind a proxy, the bucket is the client address from a trusted PROXY header, per /64 for IPv6', async (t) => {
  const from = (address: string) => Buffer.from(address.includes(':') ? `PROXY TCP6 ${address} 2001:db8::ffff 40000 3080\r\n` : `PROXY TCP4 ${address} 192.0.2.1 40000 3080\r\n`)
  for (let i = 0; i < BURST; i++) t.equal(await joinOnce(proxy.web, { proxyHeader: from('2001:db8:1:2::1') }), 403, `guess ${i + 1} from 2001:db8:1:2::1 is evaluated`)
  t.equal(await joinOnce(proxy.web, { proxyHeader: from('2001:db8:1:2::1') }), 429, 'then throttled')
  t.equal(await joinOnce(proxy.web, { proxyHeader: from('2001:db8:1:2:ffff::9') }), 429, 'as is every address of its /64')
  t.equal(await joinOnce(proxy.web, { proxyHeader: from('2001:db8:1:3::1') }), 403, 'the next /64 is not')
  t.equal(await joinOnce(proxy.web, { proxyHeader: from('198.51.100.7') }), 403, 'nor another client of the same proxy')
})
