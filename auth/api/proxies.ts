// The routes only proxies call: their heartbeats and the live set, the presence of the
// nodes whose tunnels they hold, renewals on those nodes' behalf, the direct nodes' address
// book, the shared ACME records, and who the cluster refuses.

import { NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import { directNodes } from '../direct-nodes.ts'
import { signedLiveSet, trustStatement } from '../trust.ts'
import type { AuthContext, AuthRoutes } from './context.ts'
import { renewFor } from './hosts.ts'

/** A presence report names up to 20,000 tunnels. */
const PRESENCE_BODY_LIMIT = 4 * 1024 * 1024

/**
 * The proxies whose heartbeats are fresh, less those removed or locked: a removed proxy's
 * record would otherwise stay until it expires, and nodes would keep its tunnels meanwhile.
 */
async function liveProxies(context: AuthContext): Promise<string[]> {
  return (await context.nodes.proxies()).map((p) => p.proxyId).filter((id) => context.revocations.refusedHost(id) === undefined)
}

export const proxyRoutes = {
  'POST /v1/proxies/heartbeat': {
    access: 'proxy',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const body = await call.body()
      const peer = call.peer.subject
      await context.nodes.proxyHeartbeat({ proxyId: peer.commonName, nodename: peer.nodename ?? '', webAddr: body.web_addr ?? '', lastSeen: Date.now() })
      const hostCA = context.hostCA()
      const userCA = context.userCA()
      return {
        ...signedLiveSet(context.clusterName, hostCA, await liveProxies(context)),
        host_ca_certs: hostCA.tlsCertPems,
        user_ca_certs: userCA.tlsCertPems,
        user_ca_ssh_keys: userCA.sshPublicKeys,
        trust: trustStatement(context.clusterName, hostCA, userCA),
        host_ca_phase: hostCA.rotation?.phase ?? 'standby',
        presence_interval_ms: Math.floor(context.settings.heartbeatTtlMs / 3),
      }
    },
  },

  // The live set alone, read far more often than heartbeats are written: a proxy that
  // comes back is announced to the others' agents within about a second.
  'GET /v1/proxies': {
    access: 'proxy',
    bodyLimit: NO_BODY,
    handle: async (_call, context) => ({
      ...signedLiveSet(context.clusterName, context.hostCA(), await liveProxies(context)),
      revocations: context.revocations.generation,
      assigned_labels: context.assignedLabels.generation,
    }),
  },

  // A proxy stopping cleanly: the others stop announcing it, and announce it again (so
  // that agents come back to it soon) once it heartbeats after its restart.
  'DELETE /v1/proxies/self': {
    access: 'proxy',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      await context.nodes.removeProxy(call.peer.subject.commonName)
      return {}
    },
  },

  // A proxy reports the nodes whose tunnels it holds and that heartbeated over them.
  'POST /v1/presence': {
    access: 'proxy',
    bodyLimit: PRESENCE_BODY_LIMIT,
    async handle(call, context) {
      const { nodes: reports } = await call.body()
      const proxyId = call.peer.subject.commonName
      const now = Date.now()
      // All writes start together, so the backend commits them as one group.
      const results = await Promise.all(
        reports.map(async (report) => {
          const registered = await context.nodes.lookup(report.host_id)
          if (!registered) return report.host_id
          // A locked node is not present (its proxies close its tunnels as they learn of the lock).
          if (context.revocations.refusedHost(report.host_id)) return false
          // Labels the rules refuse drop this report only, not the proxy's whole batch.
          if (report.labels && 'refused' in report.labels) return false
          const recorded = await context.nodes.heartbeat(
            {
              hostId: report.host_id,
              nodename: registered.nodename,
              roles: registered.roles,
              addr: report.addr ?? '',
              tunnel: true,
              labels: report.labels?.labels ?? {},
              lastSeen: now,
              ...(report.version ? { version: report.version } : {}),
            },
            proxyId,
          )
          return recorded || report.host_id
        }),
      )
      // Hosts removed (nodes rm) or replaced: the proxy closes their tunnels.
      const unknown = results.filter((result) => typeof result === 'string')
      return { accepted: results.filter((result) => result === true).length, unknown }
    },
  },

  // Where the nodes without a tunnel serve proxies, which dial them there.
  'GET /v1/proxies/direct-nodes': {
    access: 'proxy',
    bodyLimit: NO_BODY,
    handle: async (_call, context) => ({
      nodes: directNodes((await context.nodes.present('node')).filter((p) => !context.revocations.refusedHost(p.hostId))).map((node) =>
        context.assignedLabels.apply(node.host_id, { ...node, labels: node.labels ?? {} }),
      ),
    }),
  },

  // The proxies' shared ACME account and certificates (proxy/acme's CertStore). Any proxy
  // writes them: the account keeps its first key, and proxies serve a certificate only if a
  // CA they trust issued it.
  'POST /v1/proxies/acme/get': {
    access: 'proxy',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const value = await context.acmeRecords.get((await call.body()).key)
      return value === undefined ? {} : { value }
    },
  },

  'POST /v1/proxies/acme/put': {
    access: 'proxy',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const { key, value } = await call.body()
      await context.acmeRecords.put(key, value)
      return {}
    },
  },

  // A proxy renews for a node whose tunnel it holds (the tunnel's handshake proved the key).
  'POST /v1/hosts/renew': {
    access: 'proxy',
    bodyLimit: SMALL_BODY,
    handle: async (call, context) => renewFor(context, (await call.body()).tls_cert, true),
  },

  // What proxies refuse: fetched again whenever GET /v1/proxies reports another generation.
  'GET /v1/proxies/revocations': { access: 'proxy', bodyLimit: NO_BODY, handle: async (_call, context) => context.revocations.served() },

  // The labels the cluster assigns, signed for each host: fetched again whenever GET
  // /v1/proxies reports another generation.
  'GET /v1/proxies/assigned-labels': {
    access: 'proxy',
    bodyLimit: NO_BODY,
    handle: async (_call, context) => ({
      generation: context.assignedLabels.generation,
      hosts: context.assignedLabels.statements(),
      assigned_only_keys: [...context.assignedLabels.assignedOnly],
    }),
  },
} satisfies Partial<AuthRoutes>
