// What the web console checks of a request before anything is carried to the auth server:
// the session cookie, the CSRF token of a state-changing request, and that a browser's
// request comes from the console's own origin. The cookie is HttpOnly (no script reads it),
// Secure and SameSite=Strict (no other site's page sends it). Its __Host- prefix makes the
// browser take it only from this origin over HTTPS, for Path=/ and without Domain: a sibling
// domain or a plain-HTTP answer for this host cannot plant a session of its own choosing
// (one made for the attacker's account, which the victim would then use unawares).

import { timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { HttpError } from '../../shared/api-router.ts'

export const SESSION_COOKIE = '__Host-warren_session'
export const CSRF_HEADER = 'x-csrf-token'

/** The cookie that carries a new session's token, for as long as the session lasts. */
export function sessionCookie(token: string, expires: number, now = Date.now()): string {
  const maxAge = Math.max(0, Math.floor((expires - now) / 1000))
  return `${SESSION_COOKIE}=${token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=${maxAge}`
}

/** The cookie that makes the browser forget the session. */
export function clearedCookie(): string {
  return `${SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0`
}

/**
 * The session token the browser's cookie carries; 401 when there is none. The name must be the
 * session cookie's exactly, with only spaces and tabs around it (RFC 6265): a cookie named
 * `\u00a0__Host-warren_session` is no __Host- cookie to a browser, which takes it from a
 * sibling domain or a plain-HTTP answer, yet String.prototype.trim() would make it ours.
 */
export function sessionToken(req: IncomingMessage): string {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && trimSpaces(part.slice(0, eq)) === SESSION_COOKIE) {
      const value = trimSpaces(part.slice(eq + 1))
      if (value !== '') return value
    }
  }
  throw new HttpError(401, 'not logged in')
}

function trimSpaces(text: string): string {
  return text.replace(/^[ \t]+|[ \t]+$/g, '')
}

/**
 * A browser names the page a request comes from in Origin: it must be this console's own
 * (the scheme and the host the browser asked for). Without `required`, a request without
 * Origin (not from a browser page) passes: the CSRF token protects those routes.
 */
export function checkOrigin(req: IncomingMessage, required = false): void {
  const origin = req.headers.origin
  if (origin === undefined) {
    if (required) throw new HttpError(403, 'the request has no Origin header')
    return
  }
  if (origin !== `https://${req.headers.host}`) throw new HttpError(403, `requests from ${origin} are not accepted: only the console's own pages may ask`)
}

/** That `presented` (the x-csrf-token header, or the terminal's csrf parameter) is the session's CSRF token. */
export function checkCsrf(presented: string | string[] | null | undefined, expected: string): void {
  if (typeof presented !== 'string' || presented === '') throw new HttpError(403, `the request carries no CSRF token (header ${CSRF_HEADER})`)
  const a = Buffer.from(presented)
  const b = Buffer.from(expected)
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw new HttpError(403, 'the CSRF token does not match the session')
}
