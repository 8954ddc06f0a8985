// The web console's sessions, for proxies only: a proxy logs a person in for the browser
// (password and second factor, exactly as POST /v1/login: charged to the client's address,
// a user locked after five failures, audited as `login` with method "web"), completes an
// invitation the same way, and then presents the session's token in WEB_SESSION_HEADER:
// to read it, to log out, and to get the web terminal's short-lived SSH certificate. The
// admin and user routes take the same header (auth/api/access.ts).

import { sshAccessExtensions } from '../../shared/access-cert.ts'
import { HttpError, NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { WEB_SESSION_HEADER } from '../../shared/protocol/web-sessions.ts'
import { createSshCertificate, parseSshPublicKey } from '../../shared/ssh-cert.ts'
import { checkSshKey } from '../key-policy.ts'
import { UserError } from '../users.ts'
import { type ActiveWebSession, WebSessions } from '../web-sessions.ts'
import type { AuthContext, AuthRoutes } from './context.ts'
import { chargedTry, loginsOf } from './logins.ts'

const SSH_CERT = 'POST /v1/web-sessions/current/ssh-cert'
/** A certificate's start is back-dated this much, for nodes whose clock runs a little behind. */
const CLOCK_SKEW_MS = 60_000

/** Sessions keep nothing in memory (the backend has it all): one per request is as good as one per server. */
export function webSessionsOf(context: Pick<AuthContext, 'backend' | 'users' | 'roles' | 'revocations'>): WebSessions {
  return new WebSessions({ backend: context.backend, users: context.users, roles: context.roles, refusedUser: (name) => context.revocations.list.refusedUser(name) })
}

/** The session token a proxy presents; a proxy that presents none sent a malformed request (400). */
export function presentedToken(headers: Record<string, string | string[] | undefined>): string {
  const token = headers[WEB_SESSION_HEADER]
  if (typeof token !== 'string') throw new HttpError(400, `the request carries no web session (header ${WEB_SESSION_HEADER})`)
  return token
}

async function sessionOf(call: { req: { headers: Record<string, string | string[] | undefined> } }, context: AuthContext): Promise<ActiveWebSession> {
  return webSessionsOf(context).use(presentedToken(call.req.headers))
}

export const webSessionRoutes = {
  'POST /v1/web-sessions': {
    access: 'proxy',
    bodyLimit: SMALL_BODY,
    handle(call, context) {
      // The name as typed goes to the log of a refusal; never the password or the code.
      const logged = { user: '?', method: 'web' }
      return chargedTry(
        call,
        context,
        'login',
        async (address) => {
          const body = await call.body()
          logged.user = body.user
          // Logins refuses a locked user, as it does for certificates. The session is made before
          // the login's write, so a reset or removal racing it, which ends sessions after, ends it.
          const { user, issued: session } = await loginsOf(context).login(body.user, body.password, body.totp_code, (user) => webSessionsOf(context).create(user))
          await webSessionsOf(context).endIfLockedMeanwhile(session, context.locks)
          context.log.info('user logged in', { user: user.name, from: address, method: 'web' })
          await context.audit.record('login', { success: true, user: user.name, client_addr: address, method: 'web' })
          return session
        },
        logged,
      )
    },
  },

  'POST /v1/web-sessions/signup': {
    access: 'proxy',
    bodyLimit: SMALL_BODY,
    handle: (call, context) =>
      chargedTry(call, context, 'sign-up', async (address) => {
        const body = await call.body()
        const { user, issued: session } = await loginsOf(context).completeSignup(body.token, body.password, body.totp_code, (user) => webSessionsOf(context).create(user))
        await webSessionsOf(context).endIfLockedMeanwhile(session, context.locks)
        context.log.info('user signed up', { user: user.name, from: address, method: 'web' })
        await context.audit.record('invite.accepted', { user: user.name, client_addr: address, method: 'web' })
        return session
      }),
  },

  'GET /v1/web-sessions/current': {
    access: 'proxy',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const session = await sessionOf(call, context)
      const { user, access } = session
      return { user: user.name, roles: user.roles, editor: access.admin, logins: access.logins, csrf_token: session.csrf, expires: session.expires, access }
    },
  },

  'DELETE /v1/web-sessions/current': {
    access: 'proxy',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const ended = await webSessionsOf(context).end(presentedToken(call.req.headers))
      if (ended) context.log.info('web session ended', { proxy: call.peer.subject.commonName })
      return {}
    },
  },

  // The web terminal's certificate: the same principals and extensions as `warren login`'s,
  // for a key the proxy made for this one terminal, ending with the session at the latest.
  [SSH_CERT]: {
    access: 'proxy',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const { user: record, access, expires } = await sessionOf(call, context)
      // With the user's generation, which a reset or removal ends: the certificate is refused by it then.
      const user = await context.users.withGeneration(record)
      let publicKey
      try {
        publicKey = parseSshPublicKey((await call.body()).ssh_public_key)
        checkSshKey(publicKey)
      } catch (error) {
        throw new ProtocolError(SSH_CERT, 'ssh_public_key', `field "ssh_public_key" must be an ssh-ed25519 public key (${(error as Error).message})`)
      }
      if (access.logins.length === 0) throw new UserError(`the roles of user "${user.name}" (${user.roles.join(', ')}) allow no login`)
      const now = Date.now()
      const validBefore = new Date(expires)
      const sshCert = createSshCertificate({
        publicKey,
        caKey: context.userCA().signing.sshKey,
        type: 'user',
        keyId: user.name,
        principals: access.logins,
        validAfter: new Date(now - CLOCK_SKEW_MS),
        validBefore,
        extensions: sshAccessExtensions(access, user.generation),
      })
      await context.audit.certIssued('user', sshCert, { user: user.name, method: 'web' })
      return { ssh_cert: sshCert, valid_before: validBefore.getTime(), logins: access.logins }
    },
  },
} satisfies Partial<AuthRoutes>
