// The web console's files as the proxy serves them, through a real HTTP server: brotli as
// stored for a client that accepts it, decompressed for one that does not, the security
// headers on every answer, the app's one page for every app path, and 404 for an asset
// that is not there.

import { readFileSync } from 'node:fs'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { brotliDecompressSync } from 'node:zlib'
import t from 'tap'
import { serveWebConsoleAsset } from './assets.ts'
import { builtInCheckout, CHECKOUT_DIST } from './build.ts'
import { MANIFEST, type ManifestEntry } from './manifest.ts'

const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

await builtInCheckout()
const manifest = JSON.parse(readFileSync(join(CHECKOUT_DIST, MANIFEST), 'utf8')) as ManifestEntry[]
const script = manifest.find((entry) => entry.path.endsWith('.js'))!.path

// Requests the console does not answer get 418 here, so a test sees that it declined.
const server = createServer((req, res) => {
  if (!serveWebConsoleAsset(req, res)) res.writeHead(418).end()
})
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
t.teardown(() => server.close())
const port = (server.address() as AddressInfo).port

function get(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('every app path is the one page, sent brotli-compressed as stored, never cached stale', async (t) => {
  for (const path of ['/web', '/web/', '/web/login', '/web/nodes?labels=env%3Dprod', '/web/invite/abc', '/web/recordings/some-id']) {
    const answer = await get(path, { 'accept-encoding': 'gzip, deflate, br' })
    t.equal(answer.status, 200, path)
    t.equal(answer.headers['content-encoding'], 'br', path)
    t.equal(answer.headers['content-type'], 'text/html; charset=utf-8', path)
    t.equal(answer.headers['cache-control'], 'no-cache', path)
    const page = brotliDecompressSync(answer.body).toString('utf8')
    t.match(page, `<script src="/web/${script}" defer></script>`, path)
    t.notMatch(page, /<script>|<style>|\son\w+=/, 'nothing inline that the CSP would refuse')
  }
})

t.test('the security headers are on every answer, the 404 too', async (t) => {
  for (const path of ['/web/nodes', `/web/${script}`, '/web/assets/app-NOTTHERE.js']) {
    const answer = await get(path)
    t.equal(answer.headers['content-security-policy'], CSP, path)
    t.equal(answer.headers['x-content-type-options'], 'nosniff', path)
    t.equal(answer.headers['referrer-policy'], 'no-referrer', path)
    t.equal(answer.headers['x-frame-options'], 'DENY', path)
    t.equal(answer.headers['strict-transport-security'], 'max-age=31536000', path)
  }
})

t.test('hashed assets are cached for good; a client without br gets them decompressed', async (t) => {
  const compressed = await get(`/web/${script}`, { 'accept-encoding': 'br' })
  t.equal(compressed.status, 200)
  t.equal(compressed.headers['content-type'], 'text/javascript; charset=utf-8')
  t.equal(compressed.headers['cache-control'], 'public, max-age=31536000, immutable')
  t.equal(compressed.headers.vary, 'accept-encoding')
  const plain = await get(`/web/${script}`, { 'accept-encoding': 'gzip' })
  t.equal(plain.headers['content-encoding'], undefined)
  t.equal(plain.headers['content-length'], String(plain.body.length))
  t.same(plain.body, brotliDecompressSync(compressed.body))
  t.equal(plain.body.length, manifest.find((entry) => entry.path === script)!.size)
  const refused = await get(`/web/${script}`, { 'accept-encoding': 'br;q=0, gzip' })
  t.equal(refused.headers['content-encoding'], undefined, 'br;q=0 refuses br')
  const head = await get(`/web/${script}`, { 'accept-encoding': 'br' }, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.body.length, 0)
  t.equal(head.headers['content-length'], String(compressed.body.length))
})

t.test('an asset that is not there is a 404, not the page', async (t) => {
  const answer = await get('/web/assets/app-NOTTHERE.js')
  t.equal(answer.status, 404)
})

t.test('paths outside /web/ and the API under /web/api/ are left to others', async (t) => {
  for (const path of ['/', '/v1/health', '/webx', '/web/api/session', '/web/api/terminal?node=a']) t.equal((await get(path)).status, 418, path)
})
