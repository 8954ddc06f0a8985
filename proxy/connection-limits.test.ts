import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { type AddressInfo, connect, createServer, type Socket } from 'node:net'
import { PassThrough, Writable } from 'node:stream'
import t from 'tap'
import { type Access, legacyAccess } from '../shared/access.ts'
import { x509AccessExtension } from '../shared/access-cert.ts'
import { ApiError, UnreachableError } from '../shared/errors.ts'
import { createLogger } from '../shared/log.ts'
import type { DialReply, DialRequestIn } from '../shared/protocol/dial.ts'
import { createCA, createCertificate } from '../shared/x509.ts'
import { ConnectionLimits, type Every, LEASE_TTL_MS, type LeaseCall } from './connection-limits.ts'
import { AccessDenied, MAX_STREAMS_PER_USER_PER_NODE, NodeDialer } from './node-dialer.ts'
import { UserGateway } from './user-gateway.ts'

const log = createLogger('test', { level: 'error' })
const LIMITED = { max_connections: 2 }

interface Call {
  route: string
  body: unknown
  headers?: Record<string, string>
}

/** A connection's holder, vouched for by a stand-in of its certificate. */
function holder(user: string, access: Pick<Access, 'max_connections'>, client?: EventEmitter) {
  return { user, access, vouch: { 'x-warren-user-cert': `cert-of-${user}` }, ...(client ? { client } : {}) }
}

/** A fake auth server: records every call; `answer` decides each (a value, or a thrown error). */
function fakeAuth(answer: (route: string, body: unknown) => unknown = defaultAnswer) {
  const calls: Call[] = []
  const events: string[] = []
  const call = (async (route: string, input?: { body?: unknown }, options?: { headers?: Record<string, string> }) => {
    calls.push({ route, body: input?.body, ...(options?.headers ? { headers: options.headers } : {}) })
    events.push(route)
    return answer(route, input?.body)
  }) as unknown as LeaseCall
  return { calls, events, call }
}

let nextId = 0
function defaultAnswer(route: string, body: unknown): unknown {
  if (route === 'POST /v1/proxies/connection-leases') return { lease_id: `lease-${++nextId}`, expires: Date.now() + LEASE_TTL_MS }
  if (route === 'POST /v1/proxies/connection-leases/renew') {
    const { leases } = body as { leases: { lease_id: string }[] }
    return { renewed: leases.map((lease) => lease.lease_id), expires: Date.now() + LEASE_TTL_MS }
  }
  return {}
}

/** A renewal timer run by hand. */
function manualTimer() {
  const timer = { ms: 0, task: undefined as (() => void) | undefined, stopped: false }
  const every: Every = (ms, task) => {
    timer.ms = ms
    timer.task = task
    return () => {
      timer.stopped = true
    }
  }
  return { timer, every }
}

/** A dialer whose only node ("web1") is behind a tunnel; `open` makes its streams. */
function dialerWith(limits: ConnectionLimits | undefined, events: string[], open: () => Promise<PassThrough> = async () => new PassThrough()) {
  const dialled: DialRequestIn[] = []
  const dialer = new NodeDialer({
    tunnels: {
      find: (target) => (target === 'web1' ? { hostId: 'host-1', labels: { env: 'lab' } } : undefined),
      dial: async (_target, request) => {
        dialled.push(request)
        events.push('dial')
        return open()
      },
    },
    judgedLabels: (_hostId, reported) => reported,
    directNodes: async () => [],
    clusterName: 'test',
    credentials: () => ({ keyPem: '', certPem: '', hostCAPems: [] }),
    keepAliveIntervalMs: 10_000,
    ...(limits ? { connectionLimits: limits } : {}),
    log,
  })
  return { dialer, dialled }
}

const closed = (stream: PassThrough) => new Promise((resolve) => stream.once('close', resolve))
const settle = () => new Promise((resolve) => setImmediate(resolve))

t.test('a user whose roles set no max_connections takes no lease', async (t) => {
  const auth = fakeAuth()
  const limits = new ConnectionLimits({ call: auth.call, log })
  t.equal(await limits.acquire('web1', holder('alice', {})), undefined)
  const { dialer, dialled } = dialerWith(limits, auth.events)
  const stream = await dialer.dial('web1', { service: 'ssh' }, () => undefined, holder('alice', {}))
  stream.destroy()
  await settle()
  t.equal(dialled.length, 1)
  t.same(auth.calls, [], 'the auth server is not asked')
  t.equal(limits.size, 0)
})

t.test('a lease is taken before the stream is opened, and released when the stream closes', async (t) => {
  const auth = fakeAuth()
  const { timer, every } = manualTimer()
  const limits = new ConnectionLimits({ call: auth.call, log, every })
  const { dialer } = dialerWith(limits, auth.events)
  const stream = (await dialer.dial('web1', { service: 'ssh' }, () => undefined, holder('alice', LIMITED))) as PassThrough
  t.same(auth.events, ['POST /v1/proxies/connection-leases', 'dial'], 'the lease comes first')
  t.same(
    auth.calls[0],
    { route: 'POST /v1/proxies/connection-leases', body: undefined, headers: { 'x-warren-user-cert': 'cert-of-alice' } },
    "the user's certificate, not a name and a limit",
  )
  t.equal(limits.size, 1)
  t.equal(timer.ms, LEASE_TTL_MS / 3, 'renewed every third of the lease TTL (10 s)')
  const gone = closed(stream)
  stream.destroy()
  await gone
  await settle()
  t.same(auth.calls.at(-1), { route: 'POST /v1/proxies/connection-leases/release', body: { leases: [{ user: 'alice', lease_id: 'lease-1' }] } })
  t.equal(limits.size, 0)
  stream.emit('close')
  await settle()
  t.equal(auth.calls.filter((c) => c.route.endsWith('/release')).length, 1, 'released once')
})

t.test("the lease is released when the user's side closes first", async (t) => {
  const auth = fakeAuth()
  const limits = new ConnectionLimits({ call: auth.call, log, every: manualTimer().every })
  const { dialer } = dialerWith(limits, auth.events)
  const client = new EventEmitter()
  const stream = (await dialer.dial('web1', { service: 'ssh' }, undefined, holder('alice', LIMITED, client))) as PassThrough
  client.emit('close')
  await settle()
  t.equal(limits.size, 0)
  t.equal(auth.calls.filter((c) => c.route.endsWith('/release')).length, 1)
  stream.destroy()
  await settle()
  t.equal(auth.calls.filter((c) => c.route.endsWith('/release')).length, 1, 'not twice when the stream closes after')
})

t.test('a forwarded port takes a lease as an SSH connection does; a user the roles refuse takes none', async (t) => {
  const auth = fakeAuth()
  const limits = new ConnectionLimits({ call: auth.call, log, every: manualTimer().every })
  const { dialer, dialled } = dialerWith(limits, auth.events)
  const port = await dialer.dial('web1', { service: 'port', name: 'http' }, () => undefined, holder('alice', LIMITED))
  t.same(auth.events, ['POST /v1/proxies/connection-leases', 'dial'], 'the lease comes first')
  const gone = closed(port as PassThrough)
  port.destroy()
  await gone
  await settle()
  t.equal(limits.size, 0, 'released when the stream closes')
  const calls = auth.calls.length
  const refused = await dialer.dial('web1', { service: 'ssh' }, () => "the user's roles do not allow this node", holder('alice', LIMITED)).catch((e: Error) => e)
  t.type(refused, AccessDenied)
  t.equal(dialled.length, 1)
  t.equal(auth.calls.length, calls, 'the refused user takes no lease')
})

t.test("a user's streams to a node are bounded: beyond its share nothing is dialled, others still are", async (t) => {
  const { dialer, dialled } = dialerWith(undefined, [])
  const streams: PassThrough[] = []
  for (let i = 0; i < MAX_STREAMS_PER_USER_PER_NODE; i++)
    streams.push((await dialer.dial('web1', { service: 'port', name: 'http' }, undefined, holder('mallory', {}))) as PassThrough)
  const beyond = await dialer.dial('web1', { service: 'ssh' }, undefined, holder('mallory', {})).catch((e: Error) => e)
  t.type(beyond, AccessDenied, 'the next stream of that user, of any service, is refused')
  t.equal(dialled.length, MAX_STREAMS_PER_USER_PER_NODE, 'and not dialled')
  const other = await dialer.dial('web1', { service: 'ssh' }, undefined, holder('victim', {}))
  t.equal(dialled.length, MAX_STREAMS_PER_USER_PER_NODE + 1, "another user's is")
  other.destroy()
  const gone = closed(streams[0])
  streams[0].destroy()
  await gone
  const again = await dialer.dial('web1', { service: 'port', name: 'http' }, undefined, holder('mallory', {}))
  t.equal(dialled.length, MAX_STREAMS_PER_USER_PER_NODE + 2, 'a stream closed gives one back')
  for (const stream of [...streams, again]) stream.destroy()
})

t.test('a stream that cannot be opened gives its share back', async (t) => {
  const { dialer } = dialerWith(undefined, [], async () => {
    throw new Error('node "web1" refused: no service')
  })
  for (let i = 0; i <= MAX_STREAMS_PER_USER_PER_NODE; i++) {
    const error = await dialer.dial('web1', { service: 'port', name: 'http' }, undefined, holder('alice', {})).catch((e: Error) => e)
    t.notOk(error instanceof AccessDenied, `attempt ${i + 1}: the node's refusal, not the share's`)
  }
})

t.test('a user at its limit (409) is refused as a role refuses, and nothing is dialled', async (t) => {
  const message = 'user "alice" holds 2 connections, the most the roles allow (max_connections 2)'
  const auth = fakeAuth(() => {
    throw new ApiError(409, message)
  })
  const limits = new ConnectionLimits({ call: auth.call, log, every: manualTimer().every })
  const { dialer, dialled } = dialerWith(limits, auth.events)
  const error = await dialer.dial('web1', { service: 'ssh' }, () => undefined, holder('alice', LIMITED)).catch((e: Error) => e)
  t.type(error, AccessDenied)
  t.equal((error as AccessDenied).message, `access to node "web1" denied: ${message}`)
  t.equal((error as AccessDenied).reason, message)
  t.equal(dialled.length, 0)
  t.equal(limits.size, 0)
})

t.test('the limit holds when the auth server cannot count: the connection is refused', async (t) => {
  const auth = fakeAuth(() => {
    throw new UnreachableError('cannot reach auth.example:3025: connect ECONNREFUSED', 'ECONNREFUSED')
  })
  const limits = new ConnectionLimits({ call: auth.call, log, every: manualTimer().every })
  const { dialer, dialled } = dialerWith(limits, auth.events)
  const error = await dialer.dial('web1', { service: 'ssh' }, undefined, holder('alice', LIMITED)).catch((e: Error) => e)
  t.type(error, Error)
  t.notOk(error instanceof AccessDenied, 'a failure, not a refusal by the roles')
  t.match((error as Error).message, /^access to node "web1" refused: the connections of user "alice" cannot be counted now \(its roles set max_connections\): cannot reach auth/)
  t.equal(dialled.length, 0)

  const old = fakeAuth(() => {
    throw new ApiError(404, 'no route POST /v1/proxies/connection-leases')
  })
  const { dialer: another } = dialerWith(new ConnectionLimits({ call: old.call, log }), old.events)
  await t.rejects(another.dial('web1', { service: 'ssh' }, undefined, holder('alice', LIMITED)), /cannot be counted now/, 'an auth server without the routes too')
})

t.test('a dial that fails after the lease was taken releases it', async (t) => {
  const auth = fakeAuth()
  const limits = new ConnectionLimits({ call: auth.call, log, every: manualTimer().every })
  const { dialer } = dialerWith(limits, auth.events, async () => {
    throw new Error('the tunnel closed')
  })
  await t.rejects(dialer.dial('web1', { service: 'ssh' }, undefined, holder('alice', LIMITED)), /the tunnel closed/)
  await settle()
  t.same(auth.events, ['POST /v1/proxies/connection-leases', 'dial', 'POST /v1/proxies/connection-leases/release'])
  t.equal(limits.size, 0)
})

t.test('a direct node that cannot be reached releases the lease too', async (t) => {
  const auth = fakeAuth()
  const limits = new ConnectionLimits({ call: auth.call, log, every: manualTimer().every })
  const dialer = new NodeDialer({
    tunnels: { find: () => undefined, dial: async () => new PassThrough() },
    judgedLabels: (_hostId, reported) => reported,
    // Nothing listens on port 1.
    directNodes: async () => [{ host_id: 'host-2', nodename: 'db1', addr: '127.0.0.1:1', labels: {} }],
    clusterName: 'test',
    credentials: () => ({ keyPem: '', certPem: '', hostCAPems: [] }),
    keepAliveIntervalMs: 10_000,
    connectionLimits: limits,
    log,
  })
  await t.rejects(dialer.dial('db1', { service: 'ssh' }, undefined, holder('alice', LIMITED)))
  await settle()
  t.same(
    auth.calls.map((c) => c.route),
    ['POST /v1/proxies/connection-leases', 'POST /v1/proxies/connection-leases/release'],
  )
})

t.test('every lease held is renewed in one call; those not renewed are dropped, and not released', async (t) => {
  let expired = new Set<string>()
  const auth = fakeAuth((route, body) => {
    if (route !== 'POST /v1/proxies/connection-leases/renew') return defaultAnswer(route, body)
    const { leases } = body as { leases: { lease_id: string }[] }
    return { renewed: leases.map((l) => l.lease_id).filter((id) => !expired.has(id)), expires: Date.now() + LEASE_TTL_MS }
  })
  const { timer, every } = manualTimer()
  const limits = new ConnectionLimits({ call: auth.call, log, every })
  const a = await limits.acquire('web1', holder('alice', LIMITED))
  const b = await limits.acquire('web1', holder('alice', LIMITED))
  const c = await limits.acquire('web2', holder('bob', { max_connections: 1 }))
  expired = new Set([b!.leaseId])
  timer.task!()
  await settle()
  const renewals = auth.calls.filter((call) => call.route === 'POST /v1/proxies/connection-leases/renew')
  t.equal(renewals.length, 1, 'one call')
  t.same(renewals[0]!.body, {
    leases: [
      { user: 'alice', lease_id: a!.leaseId },
      { user: 'alice', lease_id: b!.leaseId },
      { user: 'bob', lease_id: c!.leaseId },
    ],
  })
  t.equal(limits.size, 2, 'the lease that ended at the auth server is no longer held')
  b!.release()
  await settle()
  t.equal(auth.calls.filter((call) => call.route.endsWith('/release')).length, 0, 'a lease that ended is not released')

  await limits.renew()
  t.same(auth.calls.at(-1)!.body, {
    leases: [
      { user: 'alice', lease_id: a!.leaseId },
      { user: 'bob', lease_id: c!.leaseId },
    ],
  })
  a!.release()
  c!.release()
  await settle()
  const before = auth.calls.length
  await limits.renew()
  t.equal(auth.calls.length, before, 'nothing to renew: no call')
})

t.test('a failed renewal keeps the leases for the next one', async (t) => {
  let down = true
  const auth = fakeAuth((route, body) => {
    if (route === 'POST /v1/proxies/connection-leases/renew' && down) throw new UnreachableError('cannot reach auth')
    return defaultAnswer(route, body)
  })
  const limits = new ConnectionLimits({ call: auth.call, log, every: manualTimer().every })
  await limits.acquire('web1', holder('alice', LIMITED))
  await limits.renew()
  t.equal(limits.size, 1)
  down = false
  await limits.renew()
  t.equal(limits.size, 1)
  t.equal(auth.calls.filter((call) => call.route.endsWith('/renew')).length, 2)
})

t.test('a stop ends the renewals and releases every lease held in one call', async (t) => {
  const auth = fakeAuth()
  const { timer, every } = manualTimer()
  const limits = new ConnectionLimits({ call: auth.call, log, every })
  const a = await limits.acquire('web1', holder('alice', LIMITED))
  const b = await limits.acquire('web1', holder('bob', LIMITED))
  await limits.stop()
  t.ok(timer.stopped)
  t.same(auth.calls.at(-1), {
    route: 'POST /v1/proxies/connection-leases/release',
    body: {
      leases: [
        { user: 'alice', lease_id: a!.leaseId },
        { user: 'bob', lease_id: b!.leaseId },
      ],
    },
  })
  t.equal(limits.size, 0)
  const calls = auth.calls.length
  a!.release()
  await settle()
  t.equal(auth.calls.length, calls, 'released already')
  await t.rejects(limits.acquire('web1', holder('alice', LIMITED)), /this proxy is stopping/)
  t.equal(auth.calls.length, calls, 'no lease taken once stopping')

  const failing = new ConnectionLimits({
    call: fakeAuth((route, body) => {
      if (route.endsWith('/release')) throw new UnreachableError('cannot reach auth')
      return defaultAnswer(route, body)
    }).call,
    log,
    every: manualTimer().every,
  })
  await failing.acquire('web1', holder('alice', LIMITED))
  await t.resolves(failing.stop(), 'best effort: an auth server out of reach does not fail the stop')
})

/** A connected TCP pair: the proxy's side of a user's connection, and the user's. */
async function socketPair(): Promise<{ proxySide: Socket; userSide: Socket; close: () => void }> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
  const userSide = connect((server.address() as AddressInfo).port, '127.0.0.1')
  const proxySide = await accepted
  return { proxySide, userSide, close: () => server.close() }
}

/** alice asks `gateway` for SSH to web1 with `cert`; the replies it answered. */
async function serveSsh(gateway: UserGateway, proxySide: Socket, cert: X509Certificate): Promise<DialReply[]> {
  const replies: DialReply[] = []
  await gateway.serve(
    proxySide,
    cert,
    'alice',
    '192.0.2.1',
    { node: 'web1', service: 'ssh', name: undefined, certificate: undefined, proof: undefined },
    { answer: (reply) => replies.push(reply) },
  )
  return replies
}

function limitedUserCert(max: number): X509Certificate {
  const ca = createCA('users', 'test')
  const access: Access = { ...legacyAccess(['pi']), max_connections: max }
  const pem = createCertificate({
    subject: { CN: 'alice', O: 'test', OU: ['user'] },
    issuer: { CN: 'users', O: 'test' },
    publicKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    signingKey: ca.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extKeyUsage: ['clientAuth'],
    extensions: [x509AccessExtension(access)],
  })
  return new X509Certificate(pem)
}

t.test("the user gateway: a user at its limit is told why, and the refusal is logged as the roles' are", async (t) => {
  const message = 'user "alice" holds 1 connection, the most the roles allow (max_connections 1)'
  const auth = fakeAuth(() => {
    throw new ApiError(409, message)
  })
  const lines: string[] = []
  const jsonLog = createLogger('test', { level: 'info', format: 'json', stream: new Writable({ write: (chunk, _encoding, done) => done(void lines.push(String(chunk))) }) })
  const limits = new ConnectionLimits({ call: auth.call, log, every: manualTimer().every })
  const { dialer, dialled } = dialerWith(limits, auth.events)
  const gateway = new UserGateway({ nodes: dialer, clusterName: 'test', userCAPems: () => [], log: jsonLog })
  const { proxySide, userSide, close } = await socketPair()
  t.teardown(() => {
    userSide.destroy()
    close()
  })
  const cert = limitedUserCert(1)
  const replies = await serveSsh(gateway, proxySide, cert)
  t.same(replies, [{ ok: false, error: `access to node "web1" denied: ${message}` }])
  t.same(auth.calls[0]!.headers, { 'x-warren-user-cert': cert.raw.toString('base64') }, "the lease is asked for with the user's certificate")
  t.equal(dialled.length, 0)
  const entry = lines.map((line) => JSON.parse(line)).find((e) => e.access_denied === true)
  t.match(entry, { user: 'alice', node: 'web1', access_denied: true, reason: message })
})

t.test("the user gateway: the lease lasts as long as the user's connection", async (t) => {
  const auth = fakeAuth()
  const limits = new ConnectionLimits({ call: auth.call, log, every: manualTimer().every })
  const { dialer } = dialerWith(limits, auth.events)
  const gateway = new UserGateway({ nodes: dialer, clusterName: 'test', userCAPems: () => [], log })
  const { proxySide, userSide, close } = await socketPair()
  t.teardown(close)
  const replies = await serveSsh(gateway, proxySide, limitedUserCert(2))
  t.same(replies, [{ ok: true }])
  t.equal(limits.size, 1)
  const gone = new Promise((resolve) => proxySide.once('close', resolve))
  userSide.destroy()
  await gone
  await settle()
  t.equal(limits.size, 0)
  t.equal(auth.calls.at(-1)!.route, 'POST /v1/proxies/connection-leases/release')
})
