// Who may call what: the router asks here, for every request and before any handler runs,
// whether the caller's certificate (judged by callers.ts) grants the route's access level.
// A route for hosts refuses a caller without a valid host certificate with 401 and a host
// of the wrong role with 403; an admin route refuses everyone but the admin, and users whose
// roles grant administration (editor) through a proxy, with 403. A user route admits the
// admin and any user a proxy vouches for: its handler answers by the user's access; a
// vouched route admits only the latter (what a proxy does on a user's behalf). A proxy
// vouches for a user by the user's certificate, or by the user's web session, which is
// judged again at every request (web-sessions.ts) and gives the access of the user's roles now.
// On an admin route the roles now count for a certificate too: one issued while the user's
// roles granted editor serves no admin request once they no longer do.

import { createHash, X509Certificate } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { ADMIN_PROOF_HEADER, ADMIN_PROOF_WINDOW_MS, bodyDigest, readAdminProof } from '../../shared/admin-request-proof.ts'
import { type Access, HttpError } from '../../shared/api-router.ts'
import type { Logger } from '../../shared/log.ts'
import { type ApiRoute, USER_CERT_HEADER } from '../../shared/protocol/api.ts'
import { WEB_SESSION_HEADER } from '../../shared/protocol/web-sessions.ts'
import type { Backend } from '../backend/backend.ts'
import type { Callers, Judged, Peer } from '../callers.ts'
import { type ActiveWebSession, WebSessionRefused } from '../web-sessions.ts'
import type { AuthContext } from './context.ts'

/** The web session of a token a proxy presents, as it stands now; rejects why there is none. */
export type WebSessionJudge = (token: string) => Promise<ActiveWebSession>

/**
 * Records the nonce of an admin request signed by a person (`user` and nonce in `key`), for
 * as long as it could be sent again; false when it was recorded before.
 */
export type SpendNonce = (key: string) => Promise<boolean>

/** Whether the user's roles grant editor now (the user may have lost it since its certificate). */
export type EditorNow = (user: string, generation: string | undefined) => Promise<boolean>

const ADMIN_NONCES = '/admin-request-nonces/'

/**
 * EditorNow by the user as the backend holds it: a user removed since is none, and so is a
 * certificate of a generation a reset ended (refused by locks too, but on another auth server
 * only once its list of them follows the backend).
 */
export async function editorNow(context: Pick<AuthContext, 'users' | 'roles'>, name: string, generation: string | undefined): Promise<boolean> {
  const user = await context.users.get(name)
  if (user === undefined) return false
  if (generation !== undefined && user.generation !== undefined && generation !== user.generation) return false
  return (await context.roles.accessOf(user)).access.admin
}

/** SpendNonce in the backend, so that every auth server sharing it refuses a request sent again. */
export function spendAdminNonce(backend: Backend, key: string): Promise<boolean> {
  const stored = ADMIN_NONCES + createHash('sha256').update(key).digest('hex')
  // Kept while a request could still be taken: the window either side.
  return backend.txn([{ key: stored, absent: true }], [{ op: 'put', key: stored, value: '1', ttlMs: 2 * ADMIN_PROOF_WINDOW_MS }])
}

export function admitter(
  callers: Callers,
  clusterName: () => string,
  log: Logger,
  spendNonce: SpendNonce,
  editorNow: EditorNow,
  webSession?: WebSessionJudge,
): (access: Access, req: IncomingMessage, route: ApiRoute) => Peer | null | Promise<Peer | null> {
  return (access, req, route) => {
    const socket = req.socket as TLSSocket
    const session = req.headers[WEB_SESSION_HEADER]
    if (webSession && typeof session === 'string' && (access === 'user' || access === 'admin' || access === 'vouched')) {
      const proxy = callers.judge(socket).peer
      // Only a proxy's word is taken: from anyone else the header is ignored.
      if (proxy && isProxy(proxy)) return sessionPeer(webSession, session, proxy, access, req, route, clusterName(), log)
    }
    const judged = judgeRequest(callers, req)
    if (access === 'public') return judged.peer
    const peer = judged.peer
    if (access === 'user' || access === 'vouched') {
      if (peer?.kind === 'admin' && access === 'user') return peer
      if (peer?.kind === 'user') return admittedPerson(peer, req, route, log)
      const why = judged.reason ?? socket.authorizationError
      throw new HttpError(403, `this endpoint needs a valid user certificate of cluster "${clusterName()}", through a proxy${why ? ` (${why})` : ''}`)
    }
    if (access === 'admin') {
      if (peer?.kind === 'admin') return peer
      if (peer?.kind === 'user' && !peer.admin) return admittedUser(peer, req, route, clusterName(), log)
      if (peer?.kind === 'user')
        return signedByUser(peer, req, route, clusterName(), log, spendNonce)
          .then(() => editorNow(peer.subject.commonName, peer.generation))
          .then((admin) => admittedUser({ ...peer, admin }, req, route, clusterName(), log))
      const why = judged.reason ?? socket.authorizationError
      throw new HttpError(403, `this endpoint needs a valid admin certificate of cluster "${clusterName()}"${why ? ` (${why})` : ''}`)
    }
    if (peer?.kind !== 'host') {
      const why = socket.authorizationError ?? judged.reason
      throw new HttpError(401, `this endpoint needs a valid host certificate of cluster "${clusterName()}"${why ? ` (${why})` : ''}`)
    }
    if ((access === 'node' || access === 'proxy') && !peer.subject.roles.includes(access))
      throw new HttpError(403, `this endpoint is for ${access === 'node' ? 'nodes' : 'proxies'}`)
    return peer
  }
}

/** The person of a web session a proxy presents, admitted as one it vouches for by certificate is. */
async function sessionPeer(
  webSession: WebSessionJudge,
  token: string,
  proxy: Peer,
  access: 'user' | 'admin' | 'vouched',
  req: IncomingMessage,
  route: ApiRoute,
  clusterName: string,
  log: Logger,
): Promise<Peer> {
  let session: ActiveWebSession
  try {
    session = await webSession(token)
  } catch (error) {
    // No valid session is the caller's 401; a backend that fails is the server's 500.
    if (error instanceof WebSessionRefused) throw new HttpError(401, error.message)
    throw error
  }
  const subject = { commonName: session.user.name, cluster: clusterName, roles: ['user'] }
  const user: Extract<Peer, { kind: 'user' }> = { kind: 'user', subject, via: proxy.subject.commonName, admin: session.access.admin, access: session.access }
  return access === 'admin' ? admittedUser(user, req, route, clusterName, log) : admittedPerson(user, req, route, log)
}

/** A person a proxy vouches for, on an admin route: admitted when their roles grant editor; either way the audit log says who. */
function admittedUser(user: Extract<Peer, { kind: 'user' }>, req: IncomingMessage, route: ApiRoute, clusterName: string, log: Logger): Peer {
  const name = user.subject.commonName
  const audit = { user: name, proxy: user.via, route, client_addr: clientAddress(req, user) }
  if (user.admin) {
    // Every administration by a person, with who it was: the audit trail.
    log.info(`admin request by user ${name}`, audit)
    return user
  }
  log.warn(`admin request by user ${name} refused: the user's roles do not grant editor`, audit)
  throw new HttpError(403, `this endpoint needs a valid admin certificate of cluster "${clusterName}" (user "${name}": its roles do not grant editor)`)
}

/** The body digest each admitted admin request of a person was signed with, for checkSignedBody. */
const signedBodies = new WeakMap<IncomingMessage, string>()

/**
 * An editor's admin request through a proxy counts only signed by the editor's own key
 * (shared/admin-request-proof.ts), once: the proxy's word and the certificate, which is no
 * secret, could be anyone's who holds the proxy's keys.
 */
async function signedByUser(user: Extract<Peer, { kind: 'user' }>, req: IncomingMessage, route: ApiRoute, clusterName: string, log: Logger, spendNonce: SpendNonce): Promise<void> {
  const name = user.subject.commonName
  const refuse = (why: string): never => {
    log.warn(`admin request by user ${name} refused: ${why}`, { user: name, proxy: user.via, route, client_addr: clientAddress(req, user) })
    throw new HttpError(403, `this endpoint needs a valid admin certificate of cluster "${clusterName}" (user "${name}": ${why})`)
  }
  // The certificate was judged from this header (callers.ts judgeForwardedUser).
  const vouched = req.headers[USER_CERT_HEADER]
  if (typeof vouched !== 'string') return refuse('no certificate of the user came with the request')
  const publicKey = new X509Certificate(Buffer.from(vouched, 'base64')).publicKey
  const header = req.headers[ADMIN_PROOF_HEADER]
  const proof = readAdminProof(typeof header === 'string' ? header : undefined, { cluster: clusterName, method: req.method ?? '', path: req.url ?? '/' }, publicKey, Date.now())
  if (typeof proof === 'string') return refuse(proof)
  if (!(await spendNonce(`${name}\n${proof.nonce}`))) return refuse('the request was used before: a signed request is taken once')
  signedBodies.set(req, proof.body_sha256)
}

/** The router's check of a body as read: an admin request a person signed must carry the body they signed. */
export function checkSignedBody(req: IncomingMessage, body: unknown): void {
  const signed = signedBodies.get(req)
  if (signed !== undefined && bodyDigest(body) !== signed) throw new HttpError(400, 'the request body is not the one the user signed')
}

/** A person a proxy vouches for, on a user route: the audit log says who, and the handler answers by their access. */
function admittedPerson(user: Extract<Peer, { kind: 'user' }>, req: IncomingMessage, route: ApiRoute, log: Logger): Peer {
  const name = user.subject.commonName
  log.info(`request by user ${name}`, { user: name, proxy: user.via, route, client_addr: clientAddress(req, user) })
  return user
}

/**
 * The caller of a request: its connection's certificate, or the user a proxy vouches for
 * with the user's certificate. The header counts only from a proxy: from anyone else it is
 * ignored, and the request is judged by its own certificate.
 */
function judgeRequest(callers: Callers, req: IncomingMessage): Judged {
  const judged = callers.judge(req.socket as TLSSocket)
  const vouched = req.headers[USER_CERT_HEADER]
  if (typeof vouched !== 'string' || !judged.peer || !isProxy(judged.peer)) return judged
  return callers.judgeForwardedUser(judged.peer, vouched)
}

function isProxy(peer: Peer | null): boolean {
  return peer?.kind === 'host' && peer.subject.roles.includes('proxy')
}

/** The caller's address; behind a proxy (which proves itself by certificate) the one it reports. */
export function clientAddress(req: IncomingMessage, peer: Peer | null): string {
  const forwarded = req.headers['x-warren-client-addr']
  const viaProxy = isProxy(peer) || peer?.kind === 'user'
  if (typeof forwarded === 'string' && forwarded.length <= 64 && viaProxy) return forwarded
  return (req.socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '')
}
