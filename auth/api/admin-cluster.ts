// The admin routes for the cluster itself: its status (`warrenctl status`) and the steps of
// a CA rotation (`warrenctl auth rotate`).

import { NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import type { CAStatus } from '../../shared/protocol/admin.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { VERSION } from '../../shared/version.ts'
import { actorOf } from '../audit.ts'
import type { Authority } from '../authorities.ts'
import { type RotateRequest, rotate, rotationOptions } from '../rotation.ts'
import type { AuthRoutes } from './context.ts'

function describe(ca: Authority): CAStatus {
  return {
    pins: ca.pins,
    last_rotated: ca.lastRotated ?? null,
    expires: ca.signingExpires,
    expired: ca.expired(Date.now()),
    rotation: ca.rotation ? { phase: ca.rotation.phase, mode: ca.rotation.mode, phase_started: ca.rotation.phaseStarted } : null,
  }
}

export const clusterRoutes = {
  'GET /v1/status': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(_call, context) {
      const proxyAddrs = (await context.nodes.proxies())
        .map((p) => p.webAddr)
        .filter(Boolean)
        .sort()
      return {
        cluster_name: context.clusterName,
        version: VERSION,
        host_ca: describe(context.hostCA()),
        user_ca: describe(context.userCA()),
        join_attempts: context.counts.joinAttempts,
        renewals_issued: context.renewals.issuedCount,
        public_addrs: context.settings.publicAddrs,
        proxy_addrs: proxyAddrs,
      }
    },
  },

  'POST /v1/rotate': {
    access: 'admin',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const body = await call.body()
      if (body.manual && body.phase === undefined) throw new ProtocolError(call.route, 'phase', 'missing field "phase"')
      const request: RotateRequest =
        body.manual && body.phase !== undefined
          ? { type: body.type, mode: 'manual', phase: body.phase, gracePeriodMs: body.grace_period_ms }
          : { type: body.type, mode: 'auto', gracePeriodMs: body.grace_period_ms }
      const from = (body.type === 'host' ? context.hostCA() : context.userCA()).rotation?.phase ?? 'standby'
      const next = await rotate(context.backend, request, rotationOptions(context.settings))
      await context.refreshAuthorities()
      await context.audit.record('rotation.phase', { ca: body.type, from, to: next.rotation?.phase ?? 'standby', actor: actorOf(call.peer) })
      context.log.info(`${body.type} CA rotation: ${request.mode === 'manual' ? request.phase : 'automatic, init'}`)
      return { type: body.type, phase: next.rotation?.phase ?? 'standby' }
    },
  },
} satisfies Partial<AuthRoutes>
