// The router with a real HTTP server: who may call a route is settled before its handler
// runs, bodies are read within the route's limit and with its shape, refusals get the
// status the server maps them to, and a failure is a 500 that tells the caller a request ID
// and the log the detail.

import { once } from 'node:events'
import { createServer, type IncomingMessage, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'
import t, { type Test } from 'tap'
import { type Access, HttpError, NO_BODY, Router, type RouteTable } from './api-router.ts'
import { createLogger } from './log.ts'

type TestRoute = 'GET /v1/health' | 'GET /v1/status' | 'POST /v1/users' | 'DELETE /v1/tokens/:token'

/** A refusal the test server maps to 409, as a server maps its domain errors. */
class Taken extends Error {}

interface Context {
  ran: string[]
  fail?: Error
}

/** Callers say who they are in a header: enough to drive the router's judgement here (the servers' own is tested end to end). */
function admit(access: Access, req: IncomingMessage): string | null {
  const who = typeof req.headers['x-caller'] === 'string' ? req.headers['x-caller'] : null
  if (access === 'public' || who === access) return who
  throw new HttpError(who === null ? 401 : 403, `this endpoint is for ${access}`)
}

const TABLE: RouteTable<TestRoute, Context, string> = {
  'GET /v1/health': {
    access: 'public',
    bodyLimit: NO_BODY,
    handle: async (call, context) => {
      context.ran.push(`health by ${call.peer}`)
      return { ok: true }
    },
  },
  'GET /v1/status': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(_call, context) {
      context.ran.push('status')
      if (context.fail) throw context.fail
      return {
        cluster_name: 'c',
        version: 'v',
        host_ca: { pins: [], last_rotated: null, rotation: null, expires: 0 },
        user_ca: { pins: [], last_rotated: null, rotation: null, expires: 0 },
        join_attempts: 0,
        renewals_issued: 0,
        public_addrs: [],
        proxy_addrs: [],
      }
    },
  },
  'POST /v1/users': {
    access: 'admin',
    bodyLimit: 512,
    async handle(call, context) {
      const body = await call.body()
      context.ran.push(`users ${body.name}`)
      if (body.name === 'taken') throw new Taken(`user "${body.name}" already exists`)
      return { name: body.name, logins: body.logins, roles: body.roles, signup_token: '', signup_token_id: '', signup_expires: body.signup_ttl_ms }
    },
  },
  'DELETE /v1/tokens/:token': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const id = call.params.token
      if (context.fail) throw context.fail
      return { id }
    },
  },
}

async function serve(t: Test) {
  const context: Context = { ran: [] }
  const logged = new PassThrough()
  const lines: Record<string, unknown>[] = []
  logged.on('data', (chunk) =>
    lines.push(
      ...String(chunk)
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line)),
    ),
  )
  const router = new Router(TABLE, {
    context,
    admit,
    statusOf: (error) => (error instanceof Taken ? { status: 409 } : undefined),
    log: createLogger('test', { format: 'json', stream: logged }),
  })
  const server = createServer((req, res) => void router.handle(req, res))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const port = (server.address() as AddressInfo).port
  const call = (method: string, path: string, options: { caller?: string; body?: string } = {}) =>
    new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method, path, headers: options.caller ? { 'x-caller': options.caller } : {} }, (res) => {
        let text = ''
        res.on('data', (chunk) => (text += chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }))
      })
      req.on('error', reject)
      req.end(options.body)
    })
  return { context, lines, call }
}

t.test('a route runs only for the callers its access level admits', async (t) => {
  const { context, call } = await serve(t)
  t.same(await call('GET', '/v1/status'), { status: 401, body: { error: 'this endpoint is for admin' } })
  t.same(await call('GET', '/v1/status', { caller: 'proxy' }), { status: 403, body: { error: 'this endpoint is for admin' } })
  t.same(context.ran, [], 'the handler never ran')
  t.equal((await call('GET', '/v1/status', { caller: 'admin' })).status, 200)
  t.same((await call('GET', '/v1/health')).body, { ok: true }, 'a public route admits anyone')
  t.same(context.ran, ['status', 'health by null'])
})

t.test('path parameters are decoded after the caller is judged', async (t) => {
  const { call } = await serve(t)
  t.equal((await call('DELETE', '/v1/tokens/%E0%A4%A')).status, 401, 'an anonymous caller learns nothing from the path')
  t.same(await call('DELETE', '/v1/tokens/%E0%A4%A', { caller: 'admin' }), { status: 400, body: { error: 'the path parameter "token" is not valid percent-encoding' } })
  t.same((await call('DELETE', '/v1/tokens/a%2Fb', { caller: 'admin' })).body, { id: 'a/b' })
})

t.test("bodies are read within the route's limit and with its shape", async (t) => {
  const { context, call } = await serve(t)
  t.same(await call('POST', '/v1/users', { caller: 'admin', body: JSON.stringify({ name: 'alice', logins: ['root'] }) }), {
    status: 200,
    body: { name: 'alice', logins: ['root'], roles: ['access'], signup_token: '', signup_token_id: '', signup_expires: 3_600_000 },
  })
  t.same(await call('POST', '/v1/users', { caller: 'admin', body: JSON.stringify({ name: 7 }) }), { status: 400, body: { error: 'field "name" must be a string' } })
  t.same(await call('POST', '/v1/users', { caller: 'admin', body: '{"name":' }), { status: 400, body: { error: 'request body is not valid JSON' } })
  t.same(await call('POST', '/v1/users', { caller: 'admin', body: JSON.stringify({ name: 'x'.repeat(600) }) }), {
    status: 413,
    body: { error: 'request body larger than 512 bytes' },
  })
  t.same(context.ran, ['users alice'], 'the handler ran for the good body only (the oversized one was refused before it)')
  t.same(
    await call('POST', '/v1/users', { caller: 'admin', body: JSON.stringify({ name: 'taken' }) }),
    { status: 409, body: { error: 'user "taken" already exists' } },
    'a refusal gets the status the server maps it to',
  )
})

t.test('unknown paths and methods', async (t) => {
  const { call } = await serve(t)
  t.same(await call('GET', '/v1/nothing'), { status: 404, body: { error: 'no such endpoint: /v1/nothing' } })
  t.same(await call('POST', '/v1/health'), { status: 405, body: { error: 'method POST not allowed on /v1/health' } })
})

t.test('a failure is a 500 with a request ID; the detail goes to the log only', async (t) => {
  const { context, lines, call } = await serve(t)
  context.fail = new Error('SQLITE_IOERR: disk I/O error at /var/lib/warren/backend.db')
  const answer = await call('GET', '/v1/status', { caller: 'admin' })
  t.equal(answer.status, 500)
  t.match(answer.body, { request_id: /^[0-9a-f]{16}$/ })
  t.notMatch(JSON.stringify(answer.body), /SQLITE|backend\.db/, 'no detail for the caller')
  const entry = lines.find((line) => line.level === 'error')
  t.match(entry, { request_id: answer.body.request_id, method: 'GET', path: '/v1/status', error: /SQLITE_IOERR: disk I\/O error/ }, 'the log has the detail under the same ID')
})

t.test("a failure's log entry names the route's pattern, never the values in its path", async (t) => {
  const { context, lines, call } = await serve(t)
  context.fail = new Error('etcd: deadline exceeded')
  const secret = '5f0c3a7e9b214d6c8a1e0f2b3c4d5e6f'
  const answer = await call('DELETE', `/v1/tokens/${secret}?token=${secret}`, { caller: 'admin' })
  t.equal(answer.status, 500)
  const entry = lines.find((line) => line.level === 'error')
  t.match(entry, { request_id: answer.body.request_id, method: 'DELETE', path: '/v1/tokens/:token', error: /deadline exceeded/ })
  t.notMatch(JSON.stringify(lines), secret, 'the token is in no log entry')
})

t.test('a route without an access level is refused when the router is built', async (t) => {
  const incomplete: RouteTable<TestRoute, Context, string> = {
    ...TABLE,
    // @ts-expect-error: every route states its access level
    'GET /v1/health': { bodyLimit: NO_BODY, handle: async () => ({ ok: true }) },
  }
  t.throws(() => new Router(incomplete, { context: { ran: [] }, admit, statusOf: () => undefined, log: createLogger('test') }), {
    message: 'route GET /v1/health states no access level (one of public, host, node, proxy, admin, user, vouched)',
  })
  const noLimit = { ...TABLE, 'POST /v1/users': { ...TABLE['POST /v1/users'], bodyLimit: NO_BODY } }
  t.throws(() => new Router(noLimit, { context: { ran: [] }, admit, statusOf: () => undefined, log: createLogger('test') }), {
    message: 'route POST /v1/users reads a body but its limit is NO_BODY',
  })
})
