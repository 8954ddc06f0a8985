// The auth API: every route, with who may call it, the largest body it reads and its
// handler, by domain. The router (shared/api-router.ts) takes this table whole; a route
// missing from it, or without an access level, does not type-check.

import { clusterRoutes } from './admin-cluster.ts'
import { fleetRoutes } from './admin-fleet.ts'
import { roleRoutes } from './admin-roles.ts'
import { tokenRoutes } from './admin-tokens.ts'
import { userRoutes } from './admin-users.ts'
import { auditRoutes } from './audit.ts'
import { connectionLeaseRoutes } from './connection-leases.ts'
import type { AuthRoutes } from './context.ts'
import { hostRoutes } from './hosts.ts'
import { joinRoutes } from './joins.ts'
import { loginRoutes } from './logins.ts'
import { proxyRoutes } from './proxies.ts'
import { recordingRoutes } from './recordings.ts'
import { trustBridgeRoutes } from './trust-bridges.ts'
import { userNodeRoutes } from './user-nodes.ts'
import { webSessionRoutes } from './web-sessions.ts'

export const AUTH_ROUTES: AuthRoutes = {
  ...joinRoutes,
  ...trustBridgeRoutes,
  ...hostRoutes,
  ...proxyRoutes,
  ...connectionLeaseRoutes,
  ...clusterRoutes,
  ...tokenRoutes,
  ...userRoutes,
  ...roleRoutes,
  ...loginRoutes,
  ...fleetRoutes,
  ...userNodeRoutes,
  ...auditRoutes,
  ...recordingRoutes,
  ...webSessionRoutes,
}
