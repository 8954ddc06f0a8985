import { connect } from 'node:net'
import t from 'tap'
import { DiagHttpServer, type DiagRequest } from './diag-http.ts'

/** Sends `bytes` as they are and reads everything until the server closes. */
function raw(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes))
    let text = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => (text += chunk))
    socket.on('error', reject)
    socket.on('close', () => resolve(text))
  })
}

t.test('answers one request per connection; refuses what is not one', async (t) => {
  const seen: DiagRequest[] = []
  const server = new DiagHttpServer(
    async (request) => {
      seen.push(request)
      return { status: request.path === '/ready' ? 503 : 200, type: 'text/plain', body: 'é body' }
    },
    { headTimeoutMs: 300 },
  )
  const { port } = await server.listen('127.0.0.1', 0)
  t.teardown(() => server.close())

  const ok = await fetch(`http://127.0.0.1:${port}/metrics?x=1`)
  t.equal(ok.status, 200)
  t.equal(ok.headers.get('content-type'), 'text/plain')
  t.equal(await ok.text(), 'é body', 'the body whole, its length in bytes')
  t.equal((await fetch(`http://127.0.0.1:${port}/ready`)).status, 503, 'the status given')
  t.same(
    seen,
    [
      { method: 'GET', path: '/metrics' },
      { method: 'GET', path: '/ready' },
    ],
    'the path without its query',
  )

  const head = await raw(port, 'HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  t.match(head, /^HTTP\/1\.1 200 OK\r\n/)
  t.match(head, /content-length: 7\r\n/)
  t.ok(head.endsWith('\r\n\r\n'), 'HEAD: no body')

  t.match(await raw(port, 'hello\r\n\r\n'), /^HTTP\/1\.1 400 /, 'not a request line: 400')
  t.match(await raw(port, `GET / HTTP/1.1\r\nX: ${'a'.repeat(20_000)}`), /^HTTP\/1\.1 431 /, 'a head without end past the limit: 431')
  t.equal(await raw(port, 'GET /metrics HTTP/1.1\r\nHost: x\r\n'), '', 'a head never finished: closed unanswered after the timeout')
  t.equal(seen.length, 3, 'none of those reached the handler but the HEAD')
})

t.test('on loopback, only a loopback host name is answered: a rebound name is refused', async (t) => {
  let answered = 0
  const server = new DiagHttpServer(async () => {
    answered++
    return { status: 200, type: 'text/plain', body: 'version 1' }
  })
  const { port } = await server.listen('127.0.0.1', 0)
  t.teardown(() => server.close())
  for (const host of ['localhost', `localhost:${port}`, '127.0.0.1', `127.0.0.2:${port}`, `[::1]:${port}`]) {
    t.match(await raw(port, `GET /metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`), /^HTTP\/1\.1 200 /, host)
  }
  t.match(await raw(port, 'GET /metrics HTTP/1.0\r\n\r\n'), /^HTTP\/1\.1 200 /, 'no Host header (HTTP/1.0)')
  // What a browser sends for a page on evil.example once that name resolves to 127.0.0.1.
  for (const host of ['evil.example', `evil.example:${port}`, 'localhost.evil.example', '127.0.0.1.evil.example']) {
    t.match(await raw(port, `GET /metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`), /^HTTP\/1\.1 421 /, host)
  }
  t.equal(answered, 6, 'the refused ones never reached the handler')
})

t.test('a port in use is refused with its error', async (t) => {
  const first = new DiagHttpServer(async () => ({ status: 200, type: 'text/plain', body: '' }))
  const { port } = await first.listen('127.0.0.1', 0)
  t.teardown(() => first.close())
  const second = new DiagHttpServer(async () => ({ status: 200, type: 'text/plain', body: '' }))
  await t.rejects(second.listen('127.0.0.1', port), { code: 'EADDRINUSE' })
})
