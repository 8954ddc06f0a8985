// The auth server's series and readiness on the diagnostics endpoint (shared/diag-server.ts).
// Joins, logins and certificates are counted from the audit events the server records for
// them anyway (one place says what happened), heartbeats from the routes that take them,
// and the backend's latency from a timing wrapper around it (backend/timed.ts). These are
// counted as things happen, with prom-client, whose output joins the process's /metrics.

import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { DiagServer } from '../shared/diag-server.ts'
import type { ApiRoute } from '../shared/protocol/api.ts'
import { BACKEND_OPERATIONS } from './backend/timed.ts'
import type { AuthServer } from './server.ts'

/** The routes that take heartbeats, and whose heartbeat each is. */
const HEARTBEAT_ROUTES: Partial<Record<ApiRoute, string>> = {
  'POST /v1/heartbeat': 'node',
  'POST /v1/proxies/heartbeat': 'proxy',
  // A proxy's report of the tunnel nodes it holds: their heartbeats, batched.
  'POST /v1/presence': 'tunnel_nodes',
}

/** Must be called before auth.start(): the server reads its observer then. */
export function watchAuth(diag: DiagServer, auth: AuthServer): void {
  const registry = new Registry()
  diag.registry.add(() => registry.metrics())
  const registers = [registry]
  const joins = new Counter({ name: 'warren_auth_joins_total', help: 'Join requests answered, by result', labelNames: ['result'], registers })
  const logins = new Counter({ name: 'warren_auth_logins_total', help: 'User logins, by result', labelNames: ['result'], registers })
  const issued = new Counter({ name: 'warren_auth_certificates_issued_total', help: 'Certificates issued, by kind (host or user)', labelNames: ['kind'], registers })
  const heartbeats = new Counter({ name: 'warren_auth_heartbeats_received_total', help: 'Heartbeats received, by the role that sent them', labelNames: ['role'], registers })
  const backend = new Histogram({
    name: 'warren_auth_backend_operation_duration_seconds',
    help: 'How long backend operations took, by operation',
    labelNames: ['operation'],
    // From an SQLite read (tens of µs) to an etcd write across a slow network.
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  })
  new Gauge({
    name: 'warren_auth_ca_expiry_timestamp_seconds',
    help: "When each CA's signing certificate expires (a rotation renews it), by CA",
    labelNames: ['ca'],
    registers,
    collect() {
      for (const [ca, expires] of Object.entries(auth.caExpiries ?? {})) this.set({ ca }, expires / 1000)
    },
  })
  // Every label value from the start, so rates and alerts see a 0 before the first event.
  for (const result of ['accepted', 'refused']) {
    joins.inc({ result }, 0)
    logins.inc({ result }, 0)
  }
  for (const kind of ['host', 'user']) issued.inc({ kind }, 0)
  for (const role of new Set(Object.values(HEARTBEAT_ROUTES))) heartbeats.inc({ role }, 0)
  for (const operation of BACKEND_OPERATIONS) backend.zero({ operation })

  auth.observer = {
    backendOperation: (operation, seconds) => backend.observe({ operation }, seconds),
    recorded: (type, fields) => {
      if (type === 'join') joins.inc({ result: fields.accepted ? 'accepted' : 'refused' })
      else if (type === 'login') logins.inc({ result: fields.success ? 'accepted' : 'refused' })
      else if (type === 'cert.issued' && (fields.kind === 'host' || fields.kind === 'user')) issued.inc({ kind: fields.kind })
    },
    answered: (route) => {
      const role = HEARTBEAT_ROUTES[route]
      if (role) heartbeats.inc({ role })
    },
  }
  diag.addReadiness('auth', async () => ((await auth.backendAnswers()) ? undefined : 'the backend is not open yet'))
}
