// The web console's sessions on the wire: a proxy logs a person in for the browser (the
// same password and second factor as `warren login`), or completes their invitation, and
// gets a session token that it keeps in the browser's cookie. The proxy presents the token
// in WEB_SESSION_HEADER on everything it does for that person: the session's own routes,
// the admin and user routes (as with USER_CERT_HEADER), and the short-lived SSH
// certificate of the web terminal. The auth server takes the header only from a proxy.

import type { Access } from '../access.ts'
import { object, text } from './shape.ts'

/** Where a proxy presents a person's web session token to the auth server. */
export const WEB_SESSION_HEADER = 'x-warren-web-session'

/** The web console's start of a sign-up: the token, which its own proxy carries as it is. */
export const WEB_SIGNUP_START_BODY = object({ token: text({ max: 512 }) })
export const WEB_LOGIN_BODY = object({ user: text({ max: 64 }), password: text({ max: 1024 }), totp_code: text({ max: 16 }) })

/** Sets the password and enrols the second factor offered by POST /v1/signup, and logs in. */
export const WEB_SIGNUP_BODY = object({ token: text({ max: 512 }), password: text({ max: 1024 }), totp_code: text({ max: 16 }) })

/** A key the proxy made for one web terminal: an OpenSSH public key line (ssh-ed25519). */
export const WEB_SSH_CERT_BODY = object({ ssh_public_key: text({ max: 4096 }) })

/** A session made: its token goes into the browser's cookie and nowhere else. */
export interface WebSessionCreated {
  token: string
  user: string
  /** What the browser sends back in x-csrf-token with every change it asks for. */
  csrf_token: string
  /** Epoch ms; the roles' max_session_ttl bounds it, as it bounds a certificate. */
  expires: number
}

/** A session as it stands now (GET /v1/web-sessions/current): the roles are read at each use. */
export interface WebSessionInfo {
  user: string
  roles: string[]
  /** The roles grant editor: the admin routes (tokens, users) answer. */
  editor: boolean
  /** The logins the roles allow on nodes. */
  logins: string[]
  csrf_token: string
  expires: number
  /** What the roles allow now, for the proxy's judgement of open terminals; absent from auth servers of earlier versions. */
  access?: Access
}

/** The web terminal's certificate, for the key the proxy made; it expires with the session at the latest. */
export interface WebSshCert {
  ssh_cert: string
  valid_before: number
  logins: string[]
}
