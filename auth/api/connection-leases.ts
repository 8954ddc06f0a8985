// The routes by which proxies count users' SSH connections together (the role option
// max_connections): a lease for each connection, renewed while it lasts and released when
// it ends (auth/connection-leases.ts). The proxy is the caller; it renews and releases only
// the leases it took.

import { SMALL_BODY } from '../../shared/api-router.ts'
import { ConnectionLimitReached } from '../connection-leases.ts'
import type { AuthRoutes } from './context.ts'

/** Renewals and releases name up to 100,000 leases (shared/protocol/proxies.ts): about 130 bytes each. */
const LEASES_BODY_LIMIT = 16 * 1024 * 1024

export const connectionLeaseRoutes = {
  // A lease on one of the user's connections, or a 409 naming the limit when it holds them all.
  'POST /v1/proxies/connection-leases': {
    access: 'proxy',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const { user, max } = await call.body()
      try {
        const lease = await context.connectionLeases.acquire(user, max, call.peer.subject.commonName)
        return { lease_id: lease.leaseId, expires: lease.expires }
      } catch (error) {
        if (error instanceof ConnectionLimitReached)
          context.log.info('connection refused: the user holds the most connections its roles allow', {
            user: error.user,
            max: error.max,
            held: error.held,
            proxy: call.peer.subject.commonName,
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
