// The admin routes for the fleet: listing nodes (`nodes ls`, `nodes ls --all`), removing
// them (`nodes rm`) and locks (`lock`, `lock ls`, `lock rm`). A removal or a lock made here
// is in this server's view before the answer leaves, so the proxies polling it learn it
// within their next poll.

import { NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import type { ListedNode, LockJson, PresentNode } from '../../shared/protocol/admin.ts'
import { actorOf } from '../audit.ts'
import { describeTarget, type LockRecord, parseLockRequest } from '../locks.ts'
import { listAllNodes } from '../node-listing.ts'
import type { AuthContext, AuthRoutes } from './context.ts'
import { webSessionsOf } from './web-sessions.ts'

/** The nodes whose heartbeat is fresh, removed ones left out, as the API shows them. */
export async function presentNodes({ nodes, revocations }: Pick<AuthContext, 'nodes' | 'revocations'>): Promise<PresentNode[]> {
  const removed = new Set(revocations.removed.map((record) => record.hostId))
  return (await nodes.present('node'))
    .filter((n) => !removed.has(n.hostId))
    .map((n) => ({ host_id: n.hostId, nodename: n.nodename, addr: n.addr, tunnel: n.tunnel, labels: n.labels, last_seen: n.lastSeen }))
}

/** Every node the cluster knows, online or not (`nodes ls --all`), as of `now`. */
export async function allNodes(
  { nodes, revocations, settings }: Pick<AuthContext, 'nodes' | 'revocations' | 'settings'>,
  present: PresentNode[],
  now: number,
): Promise<ListedNode[]> {
  return listAllNodes({
    known: await nodes.known('node'),
    online: new Set(present.map((n) => n.host_id)),
    registered: await nodes.registered(),
    removed: revocations.removed,
    nodeLocks: revocations.nodeLocks(),
    liveProxies: (await nodes.proxies()).map((p) => p.proxyId),
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
    async handle(call, { nodes, revocations, settings }) {
      const present = await presentNodes({ nodes, revocations })
      if (call.query.get('all') !== 'true') return { nodes: present }
      const now = Date.now()
      return { now, nodes: await allNodes({ nodes, revocations, settings }, present, now) }
    },
  },

  // The host's registration, name and presence go, and a removal record comes, in one
  // transaction: its certificates are refused from now on, everywhere.
  'DELETE /v1/nodes/:node': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(call, { nodes, revocations, log, audit }) {
      const lastSeen = new Map((await nodes.known()).map((p) => [p.hostId, p.lastSeen]))
      const removed = await nodes.remove(call.params.node, (record) => [revocations.removalOperation(record, lastSeen.get(record.hostId))])
      await revocations.refresh()
      log.info('node removed', { host_id: removed.hostId, nodename: removed.nodename })
      await audit.record('node.removed', { node: removed.nodename, host_id: removed.hostId, actor: actorOf(call.peer) })
      return { host_id: removed.hostId, nodename: removed.nodename, roles: removed.roles }
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
