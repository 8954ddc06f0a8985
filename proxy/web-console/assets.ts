// The web console's pages, scripts and styles, served by the proxy on its web port under
// /web/ (everything but /web/api/, which web-console's API handles).

import type { IncomingMessage, ServerResponse } from 'node:http'

/** Answers a GET or HEAD for a page or asset of the web console; false when `req` is not one. */
export function serveWebConsoleAsset(req: IncomingMessage, res: ServerResponse): boolean {
  const path = (req.url ?? '/').split('?')[0]
  if (!(path === '/web' || path.startsWith('/web/')) || path.startsWith('/web/api/')) return false
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
  res.end('the web console is not part of this build\n')
  return true
}
