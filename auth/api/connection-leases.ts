// The routes by which proxies count users' connections (SSH, forwarded ports) together (the role option
// max_connections): a lease for each connection, renewed while it lasts and released when
// it ends (auth/connection-leases.ts). The proxy is the caller; it renews and releases only
// the leases it took. Whose connection a lease counts, and the limit, come from what the
// proxy vouches for the user with (its certificate, or its web session for a web terminal),
// judged here as on every route a proxy carries for a user: a proxy's keys alone cannot fill
// another user's slots with a name and a limit of their choosing.

import { HttpError, NO_BODY } from '../../shared/api-router.ts'
import { ConnectionLimitReached } from '../connection-leases.ts'
import type { AuthRoutes } from './context.ts'

/** Renewals and releases name up to 100,000 leases (shared/protocol/proxies.ts): about 130 bytes each. */
const LEASES_BODY_LIMIT = 16 * 1024 * 1024

export const connectionLeaseRoutes = {
  // A lease on one of the user's connections, or a 409 naming the limit when it holds them all.
  'POST /v1/proxies/connection-leases': {
    access: 'vouched',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const holder = call.peer
      // Only a person a proxy vouches for is admitted here (access.ts).
      if (holder.kind !== 'user') throw new HttpError(403, 'a connection lease is taken by a proxy, for the user whose connection it is')
      const user = holder.subject.commonName
      const max = holder.access.max_connections
      if (max === undefined) throw new HttpError(400, `the roles of user "${user}" set no max_connections: its connections are not counted`)
      try {
        const lease = await context.connectionLeases.acquire(user, max, holder.via)
        return { lease_id: lease.leaseId, expires: lease.expires }
      } catch (error) {
        if (error instanceof ConnectionLimitReached)
          context.log.info('connection refused: the user holds the most connections its roles allow', {
            user: error.user,
            max: error.max,
            held: error.held,
            proxy: holder.via,
          })
        throw error
      }
    },
  },

  'POST /v1/proxies/connection-leases/renew': {
    access: 'proxy',
    bodyLimit: LEASES_BODY_LIMIT,
    handle: async (call, context) => context.connectionLeases.renew(call.peer.subject.commonName, (await call.body()).leases),
  },

  'POST /v1/proxies/connection-leases/release': {
    access: 'proxy',
    bodyLimit: LEASES_BODY_LIMIT,
    async handle(call, context) {
      await context.connectionLeases.release(call.peer.subject.commonName, (await call.body()).leases)
      return {}
    },
  },
} satisfies Partial<AuthRoutes>
