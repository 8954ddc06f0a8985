// The proxy's public API while its auth server does not answer: anyone may ask it for the CA
// or start a join, and is told the auth server cannot be reached, and nothing of where it is
// in the cluster's network or how it failed. Real auth server and proxy; the auth server
// stopped.

import { request as httpsRequest } from 'node:https'
import t from 'tap'
import { authAndProxy } from './helpers/cluster.ts'

const { auth, proxy } = await authAndProxy(t)

/** An anonymous request to the proxy's web port: status and parsed body. */
function ask(method: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const at = proxy.web.lastIndexOf(':')
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: proxy.web.slice(0, at), port: Number(proxy.web.slice(at + 1)), method, path, rejectUnauthorized: false }, (res) => {
      let text = ''
      res.on('data', (chunk) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('a caller is told the auth server cannot be reached, not where it is', async (t) => {
  t.equal((await ask('GET', '/v1/ca')).status, 200, 'the control: the CA while the auth server answers')
  const authPort = auth.address.slice(auth.address.lastIndexOf(':') + 1)
  await auth.stop()
  for (const [method, path] of [
    ['GET', '/v1/ca'],
    ['POST', '/v1/join/challenge'],
  ]) {
    const answer = await ask(method, path)
    t.equal(answer.status, 502, `${method} ${path}`)
    t.same(answer.body, { error: 'the auth server cannot be reached' }, 'and no more')
    t.notOk(JSON.stringify(answer.body).includes(authPort), "not the auth server's port")
  }
})
