// The web console's pages, scripts and styles, served by the proxy on its web port under
// /web/ (everything but /web/api/, which web-console's API handles). The files are those
// build.ts made: inside the single executable its assets, in a checkout proxy/web-console/dist/.
// They are stored brotli-compressed and sent as they are (content-encoding: br); a client
// that does not accept br gets them decompressed.

import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { join } from 'node:path'
import { getAsset, isSea } from 'node:sea'
import { brotliDecompressSync } from 'node:zlib'
import { MANIFEST, type ManifestEntry, SEA_ASSET_PREFIX } from './manifest.ts'
import { securityHeaders } from './security-headers.ts'

const CONTENT_TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
}

/** Asset names carry their content's hash: a new build has new names, so they never go stale. */
const IMMUTABLE = 'public, max-age=31536000, immutable'

interface StoredFile {
  brotli: Buffer
  type: string
  cacheControl: string
}

/** The console's files by URL path, read once; an Error when this build or checkout has none. */
let files: Map<string, StoredFile> | Error | undefined

function read(file: string): Buffer {
  if (isSea()) return Buffer.from(getAsset(SEA_ASSET_PREFIX + file))
  return readFileSync(join(import.meta.dirname, 'dist', file))
}

function load(): Map<string, StoredFile> | Error {
  let manifest: ManifestEntry[]
  try {
    manifest = JSON.parse(read(MANIFEST).toString('utf8'))
  } catch {
    return new Error('the web console is not built: run "npm install" (or "node proxy/web-console/build.ts")')
  }
  const loaded = new Map<string, StoredFile>()
  for (const entry of manifest) {
    const extension = entry.path.slice(entry.path.lastIndexOf('.') + 1)
    loaded.set(`/web/${entry.path}`, {
      brotli: read(entry.file),
      type: CONTENT_TYPES[extension] ?? 'application/octet-stream',
      cacheControl: entry.path === 'index.html' ? 'no-cache' : IMMUTABLE,
    })
  }
  return loaded
}

/** Answers a GET or HEAD for a page or asset of the web console; false when `req` is not one. */
export function serveWebConsoleAsset(req: IncomingMessage, res: ServerResponse): boolean {
  const path = (req.url ?? '/').split('?')[0]
  if (!(path === '/web' || path.startsWith('/web/')) || path.startsWith('/web/api/')) return false
  files ??= load()
  if (files instanceof Error) {
    res.writeHead(503, { ...securityHeaders(), 'content-type': 'text/plain; charset=utf-8' })
    res.end(`${files.message}\n`)
    return true
  }
  // Every path of the app is its one page, which routes on location.pathname; an asset
  // that is not there is a 404, not the page, so a stale script name fails plainly.
  const file = path.startsWith('/web/assets/') ? files.get(path) : files.get('/web/index.html')
  if (!file) {
    res.writeHead(404, { ...securityHeaders(), 'content-type': 'text/plain; charset=utf-8' })
    res.end('no such file\n')
    return true
  }
  const headers: Record<string, string> = { ...securityHeaders(), 'content-type': file.type, 'cache-control': file.cacheControl, vary: 'accept-encoding' }
  const body = acceptsBrotli(req) ? file.brotli : brotliDecompressSync(file.brotli)
  if (body === file.brotli) headers['content-encoding'] = 'br'
  headers['content-length'] = String(body.length)
  res.writeHead(200, headers)
  res.end(req.method === 'HEAD' ? undefined : body)
  return true
}

/** Whether the request's accept-encoding lists br (and does not refuse it with q=0). */
function acceptsBrotli(req: IncomingMessage): boolean {
  const accepted = String(req.headers['accept-encoding'] ?? '')
  return accepted.split(',').some((item) => {
    const [coding, ...params] = item.trim().split(';')
    return coding.trim().toLowerCase() === 'br' && !params.some((param) => /^\s*q=0(\.0*)?\s*$/.test(param))
  })
}
