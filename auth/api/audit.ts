// The audit routes: nodes deliver their SSH servers' events (straight, or through the proxy
// holding their tunnel), and `warrenctl audit ls` reads the log. Which node sent an event is
// decided here from the certificate that proved it, never from the events themselves.

import { NO_BODY } from '../../shared/api-router.ts'
import { AUDIT_BATCH_BYTES, flatEvent } from '../../shared/protocol/audit.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { UnregisteredHost } from '../nodes.ts'
import { judgeRelayed } from '../relayed-by-proxy.ts'
import type { AuthContext, AuthRoutes } from './context.ts'

async function nodeNamed(context: AuthContext, hostId: string): Promise<{ nodename: string; hostId: string }> {
  const registered = await context.nodes.lookup(hostId)
  if (!registered) throw new UnregisteredHost(hostId)
  return { nodename: registered.nodename, hostId }
}

/** An epoch time from a query parameter: milliseconds, or absent. */
function timeParameter(route: string, query: URLSearchParams, name: string): number | undefined {
  const text = query.get(name)
  if (text === null || text === '') return undefined
  const value = Number(text)
  if (!Number.isFinite(value) || value < 0) throw new ProtocolError(route, name, `query parameter "${name}" must be epoch milliseconds`)
  return value
}

function textParameter(query: URLSearchParams, name: string): string | undefined {
  const text = query.get(name)
  return text === null || text === '' ? undefined : text
}

export const auditRoutes = {
  // A direct node's own events: the node is the TLS certificate's host.
  'POST /v1/audit/events': {
    access: 'node',
    bodyLimit: AUDIT_BATCH_BYTES,
    async handle(call, context) {
      const body = await call.body()
      const hostId = call.peer.subject.commonName
      // Before anything costs: a node's stolen keys could otherwise fill the backend.
      context.audit.admitNodeEvents(hostId, body.events)
      // The certificate proved the node; a signature also tells that it signs what proxies carry for it.
      const node = body.signature
        ? await judgeRelayed(context, hostId, { kind: 'audit events', events: body.events.map(flatEvent) }, body.signature)
        : await nodeNamed(context, hostId)
      return { stored: await context.audit.ingest(body.events, { nodename: node.nodename, hostId }) }
    },
  },

  // A tunnelled node's events, carried by the proxy whose tunnel handshake proved the node's key.
  'POST /v1/proxies/audit-events': {
    access: 'proxy',
    bodyLimit: AUDIT_BATCH_BYTES,
    async handle(call, context) {
      const body = await call.body()
      // The node named pays only for what its signature proves: forgeries are the proxy's to pay (auth/audit.ts).
      const proxyId = call.peer.subject.commonName
      context.audit.admitRelayedBy(proxyId)
      let registered: { nodename: string }
      try {
        registered = await judgeRelayed(context, body.host_id, { kind: 'audit events', events: body.events.map(flatEvent) }, body.signature)
      } catch (error) {
        // An unsigned batch (a node of an earlier version, behind an honest proxy) cost no check.
        if (body.signature !== undefined) context.audit.relayRefused(proxyId)
        throw error
      }
      context.audit.admitNodeEvents(body.host_id, body.events)
      return { stored: await context.audit.ingest(body.events, { nodename: registered.nodename, hostId: body.host_id }) }
    },
  },

  'GET /v1/audit/events': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const { query, route } = call
      return context.audit.log.list({
        since: timeParameter(route, query, 'since'),
        until: timeParameter(route, query, 'until'),
        type: textParameter(query, 'type'),
        user: textParameter(query, 'user'),
        node: textParameter(query, 'node'),
      })
    },
  },
} satisfies Partial<AuthRoutes>
