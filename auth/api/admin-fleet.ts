// The admin routes for the fleet: listing nodes (`nodes ls`, `nodes ls --all`), removing
// them (`nodes rm`) and locks (`lock`, `lock ls`, `lock rm`). A removal or a lock made here
// is in this server's view before the answer leaves, so the proxies polling it learn it
// within their next poll.

import { NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import type { ListedNode, LockJson, PresentNode } from '../../shared/protocol/admin.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { formatLabels } from '../../shared/selectors.ts'
import { actorOf } from '../audit.ts'
import { describeTarget, type LockRecord, parseLockRequest } from '../locks.ts'
import { listAllNodes } from '../node-listing.ts'
import { NodeLookupError, type NodeRecord, registryKey } from '../nodes.ts'
import type { AuthContext, AuthRoutes } from './context.ts'
import { webSessionsOf } from './web-sessions.ts'

/** The nodes whose heartbeat is fresh, removed ones left out, as the API shows them. */
export async function presentNodes({ nodes, revocations, assignedLabels }: Pick<AuthContext, 'nodes' | 'revocations' | 'assignedLabels'>): Promise<PresentNode[]> {
  const removed = new Set(revocations.removed.map((record) => record.hostId))
  return (await nodes.present('node'))
    .filter((n) => !removed.has(n.hostId))
    .map((n) => assignedLabels.apply(n.hostId, { host_id: n.hostId, nodename: n.nodename, addr: n.addr, tunnel: n.tunnel, labels: n.labels, last_seen: n.lastSeen }))
}

/** Every node the cluster knows, online or not (`nodes ls --all`), as of `now`. */
export async function allNodes(
  { nodes, revocations, assignedLabels, settings }: Pick<AuthContext, 'nodes' | 'revocations' | 'assignedLabels' | 'settings'>,
  present: PresentNode[],
  now: number,
): Promise<ListedNode[]> {
  return listAllNodes({
    assigned: (hostId) => assignedLabels.forHost(hostId),
    assignedOnly: assignedLabels.assignedOnly,
    known: await nodes.known('node'),
    online: new Set(present.map((n) => n.host_id)),
    registered: await nodes.registered(),
    removed: revocations.removed,
    nodeLocks: revocations.nodeLocks(),
    liveProxies: (await nodes.recentProxies()).map((p) => p.proxyId),
    reportFreshMs: Math.floor(settings.heartbeatTtlMs * 1.5),
    now,
  })
}

function lockJson(lock: LockRecord): LockJson {
  return {
    id: lock.id,
    target: describeTarget(lock.target),
    ...('user' in lock.target ? { user: lock.target.user } : { node: lock.target.node, host_id: lock.target.hostId }),
    message: lock.message ?? null,
    created: lock.created,
    expires: lock.expires ?? null,
  }
}

export const fleetRoutes = {
  'GET /v1/nodes': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const present = await presentNodes(context)
      if (call.query.get('all') !== 'true') return { nodes: present }
      const now = Date.now()
      return { now, nodes: await allNodes(context, present, now) }
    },
  },

  // The host's registration, name and presence go, and a removal record comes, in one
  // transaction: its certificates are refused from now on, everywhere.
  'DELETE /v1/nodes/:node': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(call, { nodes, revocations, assignedLabels, log, audit }) {
      const lastSeen = new Map((await nodes.known()).map((p) => [p.hostId, p.lastSeen]))
      const removed = await nodes.remove(call.params.node, (record) => [
        revocations.removalOperation(record, lastSeen.get(record.hostId)),
        ...assignedLabels.removeOperations(record.hostId),
      ])
      await revocations.refresh()
      await assignedLabels.refresh()
      log.info('node removed', { host_id: removed.hostId, nodename: removed.nodename })
      await audit.record('node.removed', { node: removed.nodename, host_id: removed.hostId, actor: actorOf(call.peer) })
      return { host_id: removed.hostId, nodename: removed.nodename, roles: removed.roles }
    },
  },

  // The labels the cluster assigns win over the node's own of the same keys, at every proxy
  // within its next poll; the node learns them from its proxies or its next heartbeat.
  'POST /v1/nodes/:node/labels': {
    access: 'admin',
    bodyLimit: SMALL_BODY,
    async handle(call, { backend, nodes, assignedLabels, log, audit }) {
      const body = await call.body()
      for (const key of body.remove) {
        if (Object.hasOwn(body.set, key)) throw new ProtocolError(call.route, 'remove', `label "${key}" is both set and removed`)
      }
      const hostId = await nodes.resolve(call.params.node)
      const item = await backend.get(registryKey(hostId))
      const record = item && (JSON.parse(item.value) as NodeRecord)
      if (!item || !record?.roles.includes('node')) throw new NodeLookupError(`"${call.params.node}" is not a registered node`)
      const change = await assignedLabels.plan(hostId, (current) => {
        const next = { ...current, ...body.set }
        for (const key of body.remove) delete next[key]
        return next
      })
      // Only while the node is registered as read: never labels for a host removed meanwhile.
      if (!(await backend.txn([{ key: item.key, revision: item.revision }, ...change.conditions], change.operations)))
        throw new NodeLookupError(`node "${call.params.node}" or its labels changed meanwhile: try again`)
      await assignedLabels.refresh()
      const assigned = formatLabels(change.record.labels)
      log.info('node labels assigned', { host_id: hostId, nodename: record.nodename, assigned })
      await audit.record('node.labels', { node: record.nodename, host_id: hostId, assigned, actor: actorOf(call.peer) })
      return { host_id: hostId, nodename: record.nodename, assigned_labels: change.record.labels }
    },
  },

  'POST /v1/locks': {
    access: 'admin',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const { locks, revocations, log, audit } = context
      const lock = await locks.add(parseLockRequest(await call.body()))
      await revocations.refresh()
      // A locked user's web sessions end, not just pause: a stolen cookie must not work again
      // once the lock expires or is lifted.
      if ('user' in lock.target && lock.target.issuedBefore === undefined) await webSessionsOf(context).endAllOf(lock.target.user)
      log.info('lock created', { lock_id: lock.id, target: describeTarget(lock.target), ...(lock.expires ? { expires: new Date(lock.expires).toISOString() } : {}) })
      const named = 'user' in lock.target ? { user: lock.target.user } : { node: lock.target.node, host_id: lock.target.hostId }
      await audit.record('lock.created', {
        lock_id: lock.id,
        target: describeTarget(lock.target),
        ...named,
        message: lock.message,
        expires: lock.expires,
        actor: actorOf(call.peer),
      })
      return lockJson(lock)
    },
  },

  'GET /v1/locks': {
    access: 'admin',
    bodyLimit: NO_BODY,
    handle: async (_call, { locks }) => ({ locks: (await locks.list()).map(lockJson) }),
  },

  'DELETE /v1/locks/:id': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(call, { locks, revocations, log, audit }) {
      const lock = await locks.remove(call.params.id)
      await revocations.refresh()
      log.info('lock removed', { lock_id: lock.id, target: describeTarget(lock.target) })
      await audit.record('lock.removed', { lock_id: lock.id, target: describeTarget(lock.target), actor: actorOf(call.peer) })
      return lockJson(lock)
    },
  },
} satisfies Partial<AuthRoutes>
