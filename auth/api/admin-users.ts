// The admin routes for people: `warrenctl users add`, `users ls`, and `auth sign`, which
// asks for a user's short-lived certificates and everything a client needs with them.

import { createPublicKey, type KeyObject } from 'node:crypto'
import { NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { parseSshPublicKey } from '../../shared/ssh-cert.ts'
import { checkTlsKey, KeyPolicyError } from '../key-policy.ts'
import { userCertificatesFor } from '../user-certificates.ts'
import { UnknownUser } from '../users.ts'
import type { AuthRoutes } from './context.ts'

const CERTS = 'POST /v1/users/:name/certs'

function publicKeys(body: { ssh_public_key: string; tls_public_key: string }): { ssh: KeyObject; tls: KeyObject } {
  let keys
  try {
    keys = { ssh: parseSshPublicKey(body.ssh_public_key), tls: createPublicKey(body.tls_public_key) }
  } catch {
    throw new ProtocolError(CERTS, 'ssh_public_key', 'fields "ssh_public_key" (ssh-ed25519) and "tls_public_key" (PEM) must be public keys')
  }
  try {
    checkTlsKey(keys.tls)
  } catch (error) {
    if (error instanceof KeyPolicyError) throw new ProtocolError(CERTS, 'tls_public_key', `field "tls_public_key": ${error.message}`)
    throw error
  }
  return keys
}

export const userRoutes = {
  'POST /v1/users': {
    access: 'admin',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const body = await call.body()
      await context.roles.checkExist(body.roles)
      const user = await context.users.add(body.name, body.logins, body.roles)
      context.log.info('user added', { user: user.name, logins: user.logins.join(','), roles: user.roles.join(',') })
      return { name: user.name, logins: user.logins, roles: user.roles }
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
      return userCertificatesFor(context, user, publicKeys(body), body.ttl_ms)
    },
  },
} satisfies Partial<AuthRoutes>
