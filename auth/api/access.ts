// Who may call what: the router asks here, for every request and before any handler runs,
// whether the caller's certificate (judged by callers.ts) grants the route's access level.
// A route for hosts refuses a caller without a valid host certificate with 401 and a host
// of the wrong role with 403; an admin route refuses everyone but the admin with 403.

import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { type Access, HttpError } from '../../shared/api-router.ts'
import type { Callers, Peer } from '../callers.ts'

export function admitter(callers: Callers, clusterName: () => string): (access: Access, req: IncomingMessage) => Peer | null {
  return (access, req) => {
    const socket = req.socket as TLSSocket
    const judged = callers.judge(socket)
    if (access === 'public') return judged.peer
    const kind = access === 'admin' ? 'admin' : 'host'
    const peer = judged.peer
    if (peer?.kind !== kind) {
      const why = socket.authorizationError ?? judged.reason
      throw new HttpError(kind === 'admin' ? 403 : 401, `this endpoint needs a valid ${kind} certificate of cluster "${clusterName()}"${why ? ` (${why})` : ''}`)
    }
    if ((access === 'node' || access === 'proxy') && !peer.subject.roles.includes(access))
      throw new HttpError(403, `this endpoint is for ${access === 'node' ? 'nodes' : 'proxies'}`)
    return peer
  }
}

/** The caller's address; behind a proxy (which proves itself by certificate) the one it reports. */
export function clientAddress(req: IncomingMessage, peer: Peer | null): string {
  const forwarded = req.headers['x-warren-client-addr']
  if (typeof forwarded === 'string' && forwarded.length <= 64 && peer?.kind === 'host' && peer.subject.roles.includes('proxy')) return forwarded
  return (req.socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '')
}
