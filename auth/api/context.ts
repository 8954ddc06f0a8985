// What the auth API's handlers work with: the auth server's parts, handed to every route
// (auth/api/*.ts) by the router. The server (auth/server.ts) builds it once its backend and
// CAs are open; the CAs are functions since rotations replace them.

import type { RouteTable } from '../../shared/api-router.ts'
import type { WarrenConfig } from '../../shared/config.ts'
import type { Logger } from '../../shared/log.ts'
import type { AuthRoute } from '../../shared/protocol/api.ts'
import type { AcmeRecords } from '../acme-records.ts'
import type { AssignedLabels } from '../assigned-labels.ts'
import type { Audit } from '../audit.ts'
import type { Authority } from '../authorities.ts'
import type { Backend } from '../backend/backend.ts'
import type { Peer } from '../callers.ts'
import type { ConnectionLeases } from '../connection-leases.ts'
import type { JoinChallenges } from '../join-challenge.ts'
import type { Locks } from '../locks.ts'
import type { LoginSealing } from '../login-sealing.ts'
import type { NodeDirectory } from '../nodes.ts'
import type { FailureRateLimiter } from '../rate-limit.ts'
import type { RecordingStore } from '../recordings.ts'
import type { Recoveries } from '../recovery.ts'
import type { Renewals } from '../renew.ts'
import type { Revocations } from '../revocations.ts'
import type { TokenService } from '../tokens.ts'
import type { RoleDirectory } from '../user-roles.ts'
import type { UserDirectory } from '../users.ts'

export interface AuthContext {
  readonly clusterName: string
  hostCA(): Authority
  userCA(): Authority
  readonly backend: Backend
  readonly tokens: TokenService
  readonly nodes: NodeDirectory
  readonly challenges: JoinChallenges
  /** The key people's logins are sealed for (login-sealing.ts). */
  readonly sealing: LoginSealing
  readonly renewals: Renewals
  readonly recoveries: Recoveries
  readonly users: UserDirectory
  /** Roles of people: what a user's certificates allow. */
  readonly roles: RoleDirectory
  readonly acmeRecords: AcmeRecords
  readonly revocations: Revocations
  /** The labels the cluster assigns to hosts, which win over the nodes' own. */
  readonly assignedLabels: AssignedLabels
  readonly locks: Locks
  /** Users' connections (SSH, forwarded ports) through all proxies, counted for max_connections. */
  readonly connectionLeases: ConnectionLeases
  /** Who did what: record(type, fields) once an action has committed. */
  readonly audit: Audit
  /** Interactive sessions' recordings, as nodes upload them. */
  readonly recordings: RecordingStore
  /** Failed joins and recoveries per client address. */
  readonly limiter: FailureRateLimiter
  /** Heartbeats per host (hosts.ts, HEARTBEAT_LIMIT). */
  readonly heartbeats: FailureRateLimiter
  /** `auth_service`: certificate lifetimes, the heartbeat TTL, public addresses. */
  readonly settings: WarrenConfig['auth']
  readonly log: Logger
  /** Loads the CAs again after a rotation step, so that the next request sees them. */
  refreshAuthorities(): Promise<void>
  /** What `warrenctl status` counts. */
  readonly counts: { joinAttempts: number }
}

/** The auth API: one route for each of its paths. */
export type AuthRoutes = RouteTable<AuthRoute, AuthContext, Peer>
