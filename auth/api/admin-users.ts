// The admin routes for people: `warrenctl users add` (with an invitation), `users ls`,
// `users rm`, `users reset`, and `auth sign`, which
// asks for a user's short-lived certificates and everything a client needs with them.

import { createPublicKey, type KeyObject } from 'node:crypto'
import { NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import type { UserInvited } from '../../shared/protocol/admin.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { parseSshPublicKey } from '../../shared/ssh-cert.ts'
import { actorOf } from '../audit.ts'
import { type Invitation, Invites } from '../invites.ts'
import { checkTlsKey, KeyPolicyError } from '../key-policy.ts'
import { userCertificatesFor } from '../user-certificates.ts'
import { UnknownUser, type UserRecord } from '../users.ts'
import type { AuthContext, AuthRoutes } from './context.ts'
import { webSessionsOf } from './web-sessions.ts'

const CERTS = 'POST /v1/users/:name/certs'

/** The client's public keys from a request for certificates; a problem is a ProtocolError naming the field. */
export function publicKeys(route: string, body: { ssh_public_key: string; tls_public_key: string }): { ssh: KeyObject; tls: KeyObject } {
  let keys
  try {
    keys = { ssh: parseSshPublicKey(body.ssh_public_key), tls: createPublicKey(body.tls_public_key) }
  } catch {
    throw new ProtocolError(route, 'ssh_public_key', 'fields "ssh_public_key" (ssh-ed25519) and "tls_public_key" (PEM) must be public keys')
  }
  try {
    checkTlsKey(keys.tls)
  } catch (error) {
    if (error instanceof KeyPolicyError) throw new ProtocolError(route, 'tls_public_key', `field "tls_public_key": ${error.message}`)
    throw error
  }
  return keys
}

function invitesOf(context: AuthContext): Invites {
  const { backend, tokens, users, locks, revocations } = context
  return new Invites({ backend, tokens, users, locks, lockMade: async () => void (await revocations.refresh()) })
}

function invited(user: UserRecord, invitation: Invitation): UserInvited {
  return {
    name: user.name,
    logins: user.logins,
    roles: user.roles,
    signup_token: invitation.token,
    signup_token_id: invitation.record.id,
    signup_expires: invitation.record.expires!,
  }
}

export const userRoutes = {
  'POST /v1/users': {
    access: 'admin',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const body = await call.body()
      await context.roles.checkExist(body.roles)
      const { user, invitation } = await invitesOf(context).addUser(body.name, body.logins, body.roles, body.signup_ttl_ms)
      context.log.info('user added', { user: user.name, logins: user.logins.join(','), roles: user.roles.join(','), signup_token_id: invitation.record.id })
      await context.audit.record('user.created', {
        user: user.name,
        logins: user.logins.join(','),
        roles: user.roles.join(','),
        signup_token_id: invitation.record.id,
        actor: actorOf(call.peer),
      })
      return invited(user, invitation)
    },
  },

  // Removing a user ends its sessions at once: a lock every proxy follows (invites.ts), and
  // its web sessions go from the backend.
  'DELETE /v1/users/:name': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const user = await invitesOf(context).removeUser(call.params.name)
      await webSessionsOf(context).endAllOf(user.name)
      context.log.info('user removed', { user: user.name })
      await context.audit.record('user.removed', { user: user.name, actor: actorOf(call.peer) })
      return { name: user.name, logins: user.logins, roles: user.roles }
    },
  },

  'POST /v1/users/:name/reset': {
    access: 'admin',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      // The certificates issued before the reset are refused from here on, by a lock on them alone.
      const { user, invitation, lock } = await invitesOf(context).reset(call.params.name, (await call.body()).signup_ttl_ms)
      // A reset voids the password: the web sessions it opened end with it.
      await webSessionsOf(context).endAllOf(user.name)
      context.log.info('user reset', { user: user.name, signup_token_id: invitation.record.id, lock_id: lock.id })
      await context.audit.record('user.reset', { user: user.name, lock_id: lock.id, signup_token_id: invitation.record.id, actor: actorOf(call.peer) })
      return invited(user, invitation)
    },
  },

  'GET /v1/users': {
    access: 'admin',
    bodyLimit: NO_BODY,
    handle: async (_call, context) => ({ users: (await context.users.list()).map((u) => ({ name: u.name, logins: u.logins, roles: u.roles })) }),
  },

  'POST /v1/users/:name/certs': {
    access: 'admin',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const name = call.params.name
      const user = await context.users.get(name)
      if (!user) throw new UnknownUser(`no user "${name}": add it with "warrenctl users add ${name} --logins=..."`)
      const body = await call.body()
      return userCertificatesFor(context, user, publicKeys(CERTS, body), body.ttl_ms)
    },
  },
} satisfies Partial<AuthRoutes>
