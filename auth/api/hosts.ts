// The routes a host calls with its own certificate: a direct node's heartbeats, and the
// renewal of any host's certificates (nodes in direct mode, proxies).

import type { TLSSocket } from 'node:tls'
import { HttpError, NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import type { AssignedLabelsStatement } from '../../shared/assigned-labels.ts'
import type { RenewedCertificates } from '../../shared/protocol/hosts.ts'
import { serviceAddress } from '../direct-nodes.ts'
import { UnregisteredHost } from '../nodes.ts'
import { trustStatement } from '../trust.ts'
import { clientAddress } from './access.ts'
import type { AuthContext, AuthRoutes } from './context.ts'

/** New certificates for the holder of `certPem` (nodeOnly: on a node's behalf, by its proxy). */
export async function renewFor(context: AuthContext, certPem: string, nodeOnly: boolean): Promise<RenewedCertificates> {
  const renewed = await context.renewals.renew(certPem, { nodeOnly })
  if (renewed.issued) {
    context.log.info('host certificates renewed', { host_id: renewed.hostId })
    await context.audit.certIssued('host', renewed.sshCert, { host_id: renewed.hostId, node: (await context.nodes.lookup(renewed.hostId))?.nodename })
  }
  return { tls_cert: renewed.tlsCertPem, ssh_cert: renewed.sshCert, ...trustedCAs(context), ...assignedLabelsOf(context, renewed.hostId) }
}

/** The host's assigned labels, signed for it, as answers to it carry them: nothing when it has none. */
export function assignedLabelsOf(context: Pick<AuthContext, 'assignedLabels'>, hostId: string): { assigned_labels?: AssignedLabelsStatement } {
  const statement = context.assignedLabels.statement(hostId)
  return statement ? { assigned_labels: statement } : {}
}

/** The CAs hosts trust now, as lists and signed for nodes (auth/trust.ts). */
export function trustedCAs(context: Pick<AuthContext, 'clusterName' | 'hostCA' | 'userCA'>) {
  const hostCA = context.hostCA()
  const userCA = context.userCA()
  return { host_ca_certs: hostCA.tlsCertPems, user_ca_ssh_keys: userCA.sshPublicKeys, trust: trustStatement(context.clusterName, hostCA, userCA) }
}

/**
 * A node heartbeats every DEFAULTS.heartbeatIntervalMs (5 s); one that changes its labels or
 * address at each of many heartbeats a second (a stolen device) would have every one written
 * to the backend, each a synced commit. Per host and auth server: a burst of 50 (a restart's
 * catching up, with room to spare), then 10 a second, fifty times a node's pace; more are
 * answered 429 before anything is read or written.
 */
export const HEARTBEAT_LIMIT = { burst: 50, perMinute: 600 }

export const hostRoutes = {
  // A node without a tunnel reports where proxies reach it; the answer carries what the
  // cluster trusts now, which is how it follows CA rotations.
  'POST /v1/heartbeat': {
    access: 'node',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const hostId = call.peer.subject.commonName
      const wait = context.heartbeats.reserve(hostId)
      if (wait > 0)
        throw new HttpError(429, `host ${hostId} heartbeats more often than ${HEARTBEAT_LIMIT.perMinute / 60} a second`, { 'retry-after': String(Math.ceil(wait / 1000)) })
      const body = await call.body()
      const registered = await context.nodes.lookup(hostId)
      if (!registered) throw new UnregisteredHost(hostId)
      const recorded = await context.nodes.heartbeat({
        hostId,
        nodename: registered.nodename,
        roles: registered.roles,
        addr: serviceAddress(clientAddress(call.req, call.peer), body.service_addr),
        tunnel: false,
        labels: body.labels,
        lastSeen: Date.now(),
        ...(body.version ? { version: body.version } : {}),
      })
      if (!recorded) throw new UnregisteredHost(hostId)
      // A direct node judges the proxies that dial it: told which ones the cluster refuses.
      return { ok: true, ...trustedCAs(context), refused_proxies: context.revocations.refusedProxies(), ...assignedLabelsOf(context, hostId) }
    },
  },

  // A host renews its own certificates with its current (still valid) identity: the TLS
  // handshake proved it holds the key.
  'POST /v1/renew': {
    access: 'host',
    bodyLimit: NO_BODY,
    handle: (call, context) => renewFor(context, (call.req.socket as TLSSocket).getPeerX509Certificate()!.toString(), false),
  },
} satisfies Partial<AuthRoutes>
