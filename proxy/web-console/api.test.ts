// The web console's API on its own, with an auth server that is never reached: a failure
// (a 500) is logged with the route's pattern, never with the values in its path, which may
// be secrets (a token being revoked from the console). The console end to end is
// test/web-console-api.test.ts.

import { once } from 'node:events'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'
import t from 'tap'
import type { ApiClient } from '../../shared/api-client.ts'
import { createLogger } from '../../shared/log.ts'
import { WebConsoleApi } from './api.ts'

t.test("a failure's log entry names the carried route's pattern, not the token in its path", async (t) => {
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
  const api = new WebConsoleApi({
    auth: () => ({}) as ApiClient,
    // A bug on the way to the auth server: no refusal, so a 500.
    clientAddress: () => {
      throw new TypeError('cannot read the client address')
    },
    log: createLogger('test', { format: 'json', stream: logged }),
  })
  const server = createServer((req, res) => void api.handle(req, res))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const secret = '5f0c3a7e9b214d6c8a1e0f2b3c4d5e6f'
  const status = await new Promise<number>((resolve, reject) => {
    const port = (server.address() as AddressInfo).port
    const req = request({ host: '127.0.0.1', port, method: 'DELETE', path: `/web/api/tokens/${secret}`, headers: { cookie: '__Host-warren_session=abc' } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
  t.equal(status, 500)
  const entry = lines.find((line) => line.level === 'error')
  t.match(entry, { method: 'DELETE', path: '/web/api/tokens/:token', error: /client address/ })
  t.notMatch(JSON.stringify(lines), secret, 'the token is in no log entry')
})
