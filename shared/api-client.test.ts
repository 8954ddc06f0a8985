import { createServer } from 'node:https'
import t from 'tap'
import { loopbackCert, testCA } from '../test/helpers/certs.ts'
import { ApiClient, MAX_SOCKETS_PER_SERVER } from './api-client.ts'
import { CLUSTER_SERVER_NAME } from './protocol/tunnel.ts'

t.test('API calls ask for the cluster server name, whatever address they dial', async (t) => {
  const { certPem, keyPem } = loopbackCert(testCA('API test CA', 'Warren tests'), { CN: 'localhost' }, ['serverAuth'])
  const asked: string[] = []
  const server = createServer(
    {
      key: keyPem,
      cert: certPem,
      SNICallback: (name, done) => {
        asked.push(name)
        done(null)
      },
    },
    (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'),
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as { port: number }
  for (const host of ['127.0.0.1', 'localhost']) {
    const client = new ApiClient({ server: `${host}:${port}` })
    t.same(await client.call('GET /v1/health'), { ok: true }, `answered at ${host}`)
    await client.close()
  }
  t.same(asked, [CLUSTER_SERVER_NAME, CLUSTER_SERVER_NAME], 'both sent the reserved name, an IP address included')
})

t.test("a caller of the auth server itself refuses a proxy's certificate at its address", async (t) => {
  const ca = testCA('cluster host CA', 'cluster')
  const serve = async (role: string) => {
    const { certPem, keyPem } = loopbackCert(ca, { CN: `a-${role}`, O: 'cluster', OU: [role] }, ['serverAuth', 'clientAuth'])
    const server = createServer({ key: keyPem, cert: certPem }, (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => server.close())
    return `127.0.0.1:${(server.address() as { port: number }).port}`
  }
  const proxy = await serve('proxy')
  const auth = await serve('auth')
  const call = async (server: string, authServer: boolean) => {
    const client = new ApiClient({ server, caPems: [ca.ca.certPem], authServer })
    try {
      return await client.call('GET /v1/health')
    } finally {
      await client.close()
    }
  }
  t.same(await call(auth, true), { ok: true }, 'an auth server is one')
  await t.rejects(call(proxy, true), /not an auth server certificate/, 'a proxy is not')
  t.same(await call(proxy, false), { ok: true }, 'a caller of any cluster server takes a proxy')
})

t.test('an answer longer than the limit fails the call instead of filling memory', async (t) => {
  const { certPem, keyPem } = loopbackCert(testCA('API test CA', 'Warren tests'), { CN: 'localhost' }, ['serverAuth'])
  const server = createServer({ key: keyPem, cert: certPem }, (_req, res) => {
    // A server that sends without end.
    res.writeHead(200, { 'content-type': 'application/json' })
    const chunk = Buffer.alloc(64 * 1024, 0x20)
    const send = () => {
      while (!res.destroyed && res.write(chunk));
      if (!res.destroyed) res.once('drain', send)
    }
    send()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const client = new ApiClient({ server: `127.0.0.1:${(server.address() as { port: number }).port}`, maxAnswerBytes: 1024 * 1024 })
  t.teardown(() => client.close())
  await t.rejects(client.call('GET /v1/health'), { message: /the answer is longer than 1048576 bytes/ })
})

t.test('more calls at once than MAX_SOCKETS_PER_SERVER share that many connections, and all are answered', async (t) => {
  const { certPem, keyPem } = loopbackCert(testCA('API test CA', 'Warren tests'), { CN: 'localhost' }, ['serverAuth'])
  const held: (() => void)[] = []
  let connections = 0
  // Each answer waits until every connection the client will open is in, so that calls pile up.
  const server = createServer({ key: keyPem, cert: certPem }, (_req, res) => {
    held.push(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'))
    if (held.length === MAX_SOCKETS_PER_SERVER) for (const answer of held.splice(0)) answer()
  })
  server.on('secureConnection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const client = new ApiClient({ server: `127.0.0.1:${(server.address() as { port: number }).port}` })
  t.teardown(() => client.close())
  const calls = 2 * MAX_SOCKETS_PER_SERVER
  const answers = await Promise.all(Array.from({ length: calls }, () => client.call('GET /v1/health')))
  t.equal(answers.length, calls, 'every call answered')
  t.equal(connections, MAX_SOCKETS_PER_SERVER, 'over no more connections than that')
})
