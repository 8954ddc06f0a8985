// What a person may list of the fleet (`warren ls`, `warren ssh` on a selector, and the web
// console's Nodes page): the nodes that the roles in the user's certificate (or web
// session) let them reach, judged here from what the proxy vouches with, never from
// anything the request says. A node none of the user's roles allow is not listed; the
// admin identity sees every node. Each comes with its state, agent version, certificate
// expiry, the proxies holding its tunnel and the logins the user may use; with all=true,
// the nodes offline or locked too.

import { loginsOn, nodeRefusal } from '../../shared/access.ts'
import { NO_BODY } from '../../shared/api-router.ts'
import type { PresentNode } from '../../shared/protocol/admin.ts'
import type { ReachableNode } from '../../shared/protocol/fleet.ts'
import { allNodes, presentNodes } from './admin-fleet.ts'
import type { AuthRoutes } from './context.ts'

export const userNodeRoutes = {
  'GET /v1/user/nodes': {
    access: 'user',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const peer = call.peer
      const allowed = (node: PresentNode) => peer.kind !== 'user' || nodeRefusal(peer.access, node.labels) === undefined
      const now = Date.now()
      const present = await presentNodes(context)
      const listed = (await allNodes(context, present, now)).filter((node) => node.status !== 'removed')
      const presentIds = new Set(present.map((node) => node.host_id))
      const wanted = call.query.get('all') === 'true' ? listed : listed.filter((node) => presentIds.has(node.host_id))
      const nodes: ReachableNode[] = wanted
        // The logins of the roles that select each node, not every login the user has.
        .map((node) => ({ ...node, last_seen: node.last_seen ?? 0, logins: peer.kind === 'user' ? loginsOn(peer.access, node.labels) : [] }))
        .filter(allowed)
        .sort((a, b) => a.nodename.localeCompare(b.nodename) || a.host_id.localeCompare(b.host_id))
      return { now, nodes }
    },
  },
} satisfies Partial<AuthRoutes>
