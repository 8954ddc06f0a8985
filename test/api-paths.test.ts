// Malformed percent-encoding in an API path is the caller's mistake: an anonymous caller is
// refused for who it is before the path is decoded, an admin gets a 400, and the server
// logs no error.

import { request } from 'node:https'
import t from 'tap'
import { AuthProcess } from './helpers/cluster.ts'

const BAD_PATH = '/v1/tokens/%E0%A4%A'

const auth = new AuthProcess({ authServiceYaml: 'log: { format: json }' })
t.before(() => auth.start())
t.teardown(() => auth.stop())

function anonymous(method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`https://${auth.address}${path}`, { method, rejectUnauthorized: false }, (res) => {
      let body = ''
      res.on('data', (chunk) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** The auth server's log entries (JSON lines on standard error) at level error. */
function errorEntries(): unknown[] {
  return auth.daemon.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line))
    .filter((entry) => entry.level === 'error')
}

t.test('an anonymous caller is refused before the path is decoded', async (t) => {
  const response = await anonymous('DELETE', BAD_PATH)
  t.equal(response.status, 403, 'refused for lacking an admin certificate, not a 500')
  t.match(JSON.parse(response.body).error, /admin certificate/)
  const users = await anonymous('POST', '/v1/users/%E0%A4%A/certs')
  t.equal(users.status, 403)
})

t.test('an admin gets a 400 naming the parameter', async (t) => {
  await t.rejects(auth.api('DELETE', BAD_PATH), { status: 400, message: /"token" is not valid percent-encoding/ })
  await t.rejects(auth.api('POST', '/v1/users/%E0%A4%A/certs', {}), { status: 400, message: /"name" is not valid percent-encoding/ })
  await t.resolves(auth.api('GET', '/v1/tokens'), 'the server still answers')
})

t.test('no error was logged', async (t) => {
  t.ok(
    auth.daemon.stderr.split('\n').some((line) => line.startsWith('{"time"')),
    'the log is JSON',
  )
  t.same(errorEntries(), [])
})
