// The public routes people use, straight or through a proxy's web port: accepting an
// invitation (POST /v1/signup shows whose it is and offers a second factor, POST
// /v1/signup/complete sets the password and enrols it, and logs in) and logging in for
// certificates, for keys the caller proves it holds (login-keys.ts). What people type is
// sealed for the auth server (shared/sealed-login.ts): the proxy that carries it reads none.
// Like joins, every try is charged to the client's address before its body is read and
// given back only when it succeeds.

import type { IncomingMessage } from 'node:http'
import { SMALL_BODY } from '../../shared/api-router.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { LOGIN_SECRETS, SIGNUP_COMPLETE_SECRETS, SIGNUP_SECRETS, sealedPurpose } from '../../shared/protocol/logins.ts'
import { parseWith } from '../../shared/protocol/shape.ts'
import type { Peer } from '../callers.ts'
import { Locked } from '../locks.ts'
import { provenLoginKeys } from '../login-keys.ts'
import { Logins } from '../logins.ts'
import { signedKnownHosts, userCertificatesFor } from '../user-certificates.ts'
import { UnknownUser } from '../users.ts'
import { clientAddress } from './access.ts'
import type { AuthContext, AuthRoutes } from './context.ts'
import { described, reserveTry } from './joins.ts'

/** Logins keep nothing in memory (the backend has it all): one per request is as good as one per server. */
export function loginsOf(context: AuthContext): Logins {
  return new Logins({
    backend: context.backend,
    tokens: context.tokens,
    users: context.users,
    locks: context.locks,
    clusterName: () => context.clusterName,
  })
}

/**
 * Runs one try of `what` charged to the client's address: refused at once when the address
 * has no tries left (before the body is read), given back when it succeeds, its refusal
 * logged with `fields` as they are by then and answered as one.
 */
export async function chargedTry<T>(
  call: { req: IncomingMessage; peer: Peer | null },
  context: AuthContext,
  what: 'sign-up' | 'login',
  attempt: (address: string) => Promise<T>,
  fields: Record<string, string> = {},
): Promise<T> {
  const address = clientAddress(call.req, call.peer)
  reserveTry(context, address, what, what)
  try {
    const result = await attempt(address)
    context.limiter.refund(address)
    return result
  } catch (error) {
    const refusal = described(context, error, `${what} refused`, address, fields)
    // The name as typed and why, never what was typed as the password or code.
    if (what === 'login')
      await context.audit.record('login', {
        success: false,
        user: fields.user,
        client_addr: address,
        reason: (refusal as Error).message,
        ...(fields.method ? { method: fields.method } : {}),
      })
    throw refusal
  }
}

export const loginRoutes = {
  'POST /v1/signup': {
    access: 'public',
    bodyLimit: SMALL_BODY,
    handle: (call, context) =>
      chargedTry(call, context, 'sign-up', async (address) => {
        const body = await call.body()
        // Sealed from warren login, whose answer is sealed back; as it is from the web console's proxy.
        const opened = body.sealed && context.sealing.open(call.route, sealedPurpose(call.route, context.clusterName), body.sealed)
        const token = opened ? parseWith('sign-up', SIGNUP_SECRETS, opened.value, 'the sealed sign-up: ').token : body.token
        if (token === undefined) throw new ProtocolError(call.route, 'token', 'field "token" or "sealed" is required')
        const started = await loginsOf(context).startSignup(token)
        context.log.info('sign-up started', { user: started.user, from: address })
        const answer = { user: started.user, cluster_name: context.clusterName, totp_secret: started.secret, otpauth_uri: started.uri }
        return opened ? { sealed: opened.sealAnswer(answer) } : answer
      }),
  },

  'POST /v1/signup/complete': {
    access: 'public',
    bodyLimit: SMALL_BODY,
    handle: (call, context) =>
      chargedTry(call, context, 'sign-up', async (address) => {
        const body = await call.body()
        const opened = context.sealing.open(call.route, sealedPurpose(call.route, context.clusterName, body.nonce, '', body), body.sealed).value
        const { token, password, totp_code } = parseWith('sign-up', SIGNUP_COMPLETE_SECRETS, opened, 'the sealed sign-up: ')
        const keys = await provenLoginKeys(call.route, body, context)
        // The password and a fresh code were just proven: this is the user's first login too.
        const { user, issued } = await loginsOf(context).completeSignup(token, password, totp_code, (user) => userCertificatesFor(context, user, keys, body.ttl_ms))
        context.log.info('user signed up', { user: user.name, from: address })
        await context.audit.record('invite.accepted', { user: user.name, client_addr: address })
        return issued
      }),
  },

  'POST /v1/login': {
    access: 'public',
    bodyLimit: SMALL_BODY,
    handle(call, context) {
      // The name as typed goes to the log of a refusal (someone may be guessing names); the answer does not repeat it.
      const logged = { user: '?' }
      return chargedTry(
        call,
        context,
        'login',
        async (address) => {
          const body = await call.body()
          logged.user = body.user
          const opened = context.sealing.open(call.route, sealedPurpose(call.route, context.clusterName, body.nonce, body.user, body), body.sealed).value
          const { password, totp_code } = parseWith('login', LOGIN_SECRETS, opened, 'the sealed login: ')
          const keys = await provenLoginKeys(call.route, body, context)
          const { user, issued: certs } = await loginsOf(context).login(body.user, password, totp_code, (user) => userCertificatesFor(context, user, keys, body.ttl_ms))
          context.log.info('user logged in', { user: user.name, from: address })
          await context.audit.record('login', { success: true, user: user.name, client_addr: address })
          return certs
        },
        logged,
      )
    },
  },

  'POST /v1/proxies/known-hosts': {
    access: 'proxy',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const { user } = await call.body()
      if (!(await context.users.get(user))) throw new UnknownUser(`no user "${user}"`)
      const locked = context.revocations.list.refusedUser(user)
      if (locked) throw new Locked(locked)
      return signedKnownHosts(context)
    },
  },
} satisfies Partial<AuthRoutes>
