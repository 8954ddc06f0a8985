// The admin API for the fleet: listing nodes (`nodes ls`, `nodes ls --all`), removing them
// (`nodes rm`) and locks (`lock`, `lock ls`, `lock rm`); and the list of refused hosts and
// users that proxies enforce. A removal or a lock made here is in this server's view before
// the answer leaves, so the proxies polling it learn it within their next poll.

import type { IncomingMessage } from 'node:http'
import { describeTarget, parseLockRequest, type LockRecord, type Locks } from './locks.ts'
import { listAllNodes } from './node-listing.ts'
import { NodeLookupError, type NodeDirectory } from './nodes.ts'
import type { Revocations } from './revocations.ts'
import { HttpError, readJson, type Router } from '../shared/json-http.ts'
import type { Logger } from '../shared/log.ts'

export interface FleetRoutesContext {
  requireAdmin: (req: IncomingMessage) => void
  requireProxy: (req: IncomingMessage) => void
  nodes: NodeDirectory
  locks: Locks
  revocations: Revocations
  heartbeatTtlMs: number
  log: Logger
}

function lockJson(lock: LockRecord): Record<string, unknown> {
  return {
    id: lock.id,
    target: describeTarget(lock.target),
    ...('user' in lock.target ? { user: lock.target.user } : { node: lock.target.node, host_id: lock.target.hostId }),
    message: lock.message ?? null,
    created: lock.created,
    expires: lock.expires ?? null,
  }
}

function wantsAll(req: IncomingMessage): boolean {
  return new URL(req.url ?? '/', 'https://localhost').searchParams.get('all') === 'true'
}

export function addFleetRoutes(router: Router, context: FleetRoutesContext): void {
  const { nodes, locks, revocations, log } = context

  router.add('GET', '/v1/nodes', async (req) => {
    context.requireAdmin(req)
    const removed = new Set(revocations.removed.map((record) => record.hostId))
    const present = (await nodes.present('node')).filter((n) => !removed.has(n.hostId))
    if (!wantsAll(req)) return { nodes: present.map((n) => ({ host_id: n.hostId, nodename: n.nodename, addr: n.addr, tunnel: n.tunnel, labels: n.labels, last_seen: n.lastSeen })) }
    const now = Date.now()
    return {
      now,
      nodes: listAllNodes({
        known: await nodes.known('node'),
        online: new Set(present.map((n) => n.hostId)),
        registered: await nodes.registered(),
        removed: revocations.removed,
        nodeLocks: revocations.nodeLocks(),
        liveProxies: (await nodes.proxies()).map((p) => p.proxyId),
        reportFreshMs: Math.floor(context.heartbeatTtlMs * 1.5),
        now,
      }),
    }
  })

  // The host's registration, name and presence go, and a removal record comes, in one
  // transaction: its certificates are refused from now on, everywhere.
  router.add('DELETE', '/v1/nodes/:node', async (req, params) => {
    context.requireAdmin(req)
    const lastSeen = new Map((await nodes.known()).map((p) => [p.hostId, p.lastSeen]))
    try {
      const removed = await nodes.remove(params.node, (record) => [revocations.removalOperation(record, lastSeen.get(record.hostId))])
      await revocations.refresh()
      log.info('node removed', { host_id: removed.hostId, nodename: removed.nodename })
      return { host_id: removed.hostId, nodename: removed.nodename, roles: removed.roles }
    } catch (error) {
      if (error instanceof NodeLookupError) throw new HttpError(404, error.message)
      throw error
    }
  })

  router.add('POST', '/v1/locks', async (req) => {
    context.requireAdmin(req)
    const lock = await locks.add(parseLockRequest(await readJson(req)))
    await revocations.refresh()
    log.info('lock created', { lock_id: lock.id, target: describeTarget(lock.target), ...(lock.expires ? { expires: new Date(lock.expires).toISOString() } : {}) })
    return lockJson(lock)
  })

  router.add('GET', '/v1/locks', async (req) => {
    context.requireAdmin(req)
    return { locks: (await locks.list()).map(lockJson) }
  })

  router.add('DELETE', '/v1/locks/:id', async (req, params) => {
    context.requireAdmin(req)
    const lock = await locks.remove(params.id)
    await revocations.refresh()
    log.info('lock removed', { lock_id: lock.id, target: describeTarget(lock.target) })
    return lockJson(lock)
  })

  // What proxies refuse: fetched again whenever GET /v1/proxies reports another generation.
  router.add('GET', '/v1/proxies/revocations', async (req) => {
    context.requireProxy(req)
    return revocations.snapshot
  })
}
