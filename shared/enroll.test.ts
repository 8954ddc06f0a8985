// A join tried again: after the wait a 429 asks for, and, with backoff, after a failure that
// leaves its outcome unknown (no answer, a 5xx), never after a refusal; given up once the next
// try would pass the limit. What counts as no answer is checked against the real HTTPS client.

import { once } from 'node:events'
import { createServer as createHttpsServer } from 'node:https'
import { type AddressInfo, createServer } from 'node:net'
import t from 'tap'
import { selfSignedCertificate } from '../test/helpers/self-signed-cert.ts'
import { ApiClient } from './api-client.ts'
import { unanswered, untilAnswered } from './enroll.ts'
import { ApiError, UnreachableError, WarrenError } from './errors.ts'
import { createLogger } from './log.ts'

const log = createLogger('test', { level: 'error' })
/** A clock that only the waits move: each wait asked for is recorded, none is waited. */
function fakeTime() {
  let clock = 0
  const waits: number[] = []
  return {
    waits,
    now: () => clock,
    sleep: async (ms: number) => {
      waits.push(ms)
      clock += ms
    },
  }
}
const quick = fakeTime()

t.test('tried again after each wait the server asks for, until it succeeds', async (t) => {
  let calls = 0
  const value = await untilAnswered(log, async () => {
    if (++calls < 3) throw new ApiError(429, 'too many join attempts', 0)
    return 'joined'
  })
  t.equal(value, 'joined')
  t.equal(calls, 3)
})

t.test('tried again, with backoff, after no answer or a server failure', async (t) => {
  const failures = [
    new UnreachableError('cannot reach 10.0.0.1:3025: ECONNRESET: socket hang up', 'ECONNRESET'),
    new ApiError(503, 'the backend is unavailable'),
    new ApiError(502, 'HTTP 502'),
  ]
  let calls = 0
  let draws = 0
  const time = fakeTime()
  const value = await untilAnswered(
    log,
    async () => {
      if (calls < failures.length) throw failures[calls++]
      return 'joined'
    },
    // Full jitter from the top of each window: waits of 19, 39 and 79 ms.
    {
      ...time,
      baseMs: 20,
      capMs: 1000,
      random: () => {
        draws++
        return 0.999999
      },
    },
  )
  t.equal(value, 'joined')
  t.equal(calls, 3)
  t.equal(draws, 3, 'one draw per wait')
  t.same(time.waits, [19, 39, 79], 'each window twice the last')
})

t.test('refusals, a 429 without a time to wait, and failures that would fail again are not tried again', async (t) => {
  for (const error of [
    new ApiError(401, 'token expired or not found'),
    new ApiError(409, 'nodename "pi-1" is already registered to another node'),
    new ApiError(429, 'busy'),
    new Error('cannot reach'),
    new WarrenError('cannot reach auth.example:3025: ECONNRESET: a WarrenError of another kind'),
    new UnreachableError('cannot reach auth.example:3025: UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'),
    new UnreachableError('cannot reach nowhere.invalid:3025: ENOTFOUND: getaddrinfo ENOTFOUND nowhere.invalid', 'ENOTFOUND'),
    new WarrenError('CA pin mismatch: 10.0.0.1:3025 presented a CA with pin sha256:00'),
  ]) {
    let calls = 0
    await t.rejects(
      untilAnswered(
        log,
        async () => {
          calls++
          throw error
        },
        quick,
      ),
      error,
    )
    t.equal(calls, 1, error.message)
  }
})

t.test('given up when the wait would pass the limit', async (t) => {
  let calls = 0
  await t.rejects(
    untilAnswered(
      log,
      async () => {
        calls++
        throw new ApiError(429, 'too many join attempts', 60)
      },
      { limitMs: 30_000 },
    ),
    /too many join attempts/,
  )
  t.equal(calls, 1, 'tried once: a wait of 60 s or more would pass the limit of 30 s')

  let unansweredCalls = 0
  const time = fakeTime()
  await t.rejects(
    untilAnswered(
      log,
      async () => {
        unansweredCalls++
        throw new ApiError(503, 'unavailable')
      },
      { ...time, limitMs: 300, baseMs: 20, capMs: 20, random: () => 0.999999 },
    ),
    /unavailable/,
  )
  t.equal(unansweredCalls, 16, 'tried once, then after each wait of 19 ms that ends within the limit of 300 ms')
  t.same(time.waits, Array(15).fill(19))
})

t.test("the HTTPS client's failures: no answer is tried again, a certificate that fails is not", async (t) => {
  const { key, cert } = selfSignedCertificate()
  let behaviour: 'hang up' | 'silent' | '503' = 'hang up'
  const server = createHttpsServer({ key, cert }, (req, res) => {
    req.resume()
    req.on('end', () => {
      if (behaviour === 'hang up') req.socket.destroy()
      else if (behaviour === '503') res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'the backend is unavailable' }))
      // silent: never answers
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`
  const failure = async (client: ApiClient) => {
    try {
      await client.call('POST /v1/join/challenge')
    } catch (error) {
      return error
    } finally {
      await client.close()
    }
    throw new Error('the call succeeded')
  }
  // Unverified, as the CA is fetched: the server's answers are what is tested.
  const anonymous = () => new ApiClient({ server: address, timeoutMs: 300 })

  const hungUp = await failure(anonymous())
  t.ok(unanswered(hungUp), `the connection cut after the request: ${(hungUp as Error).message}`)
  behaviour = 'silent'
  const silent = await failure(anonymous())
  t.ok(unanswered(silent), `no answer in time: ${(silent as Error).message}`)
  behaviour = '503'
  const failed = await failure(anonymous())
  t.ok(unanswered(failed), `a 5xx: ${(failed as Error).message}`)

  const closed = createServer()
  closed.listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const closedPort = (closed.address() as AddressInfo).port
  await new Promise((resolve) => closed.close(resolve))
  const refused = await failure(new ApiClient({ server: `127.0.0.1:${closedPort}` }))
  t.ok(unanswered(refused), `nothing listening (a proxy restarting): ${(refused as Error).message}`)

  const other = selfSignedCertificate()
  const untrusted = await failure(new ApiClient({ server: address, caPems: [other.cert] }))
  t.notOk(unanswered(untrusted), `a server the pinned CA did not certify: ${(untrusted as Error).message}`)
})
