// What a person may list of the fleet (`warren ls`, and `warren ssh` on a selector): the
// present nodes that the roles in the user's certificate let them reach, judged here from
// the certificate the proxy vouches with, never from anything the request says. A node none
// of the user's roles allow is not listed; the admin identity sees every node.

import { nodeRefusal } from '../../shared/access.ts'
import { NO_BODY } from '../../shared/api-router.ts'
import { presentNodes } from './admin-fleet.ts'
import type { AuthRoutes } from './context.ts'

export const userNodeRoutes = {
  'GET /v1/user/nodes': {
    access: 'user',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const peer = call.peer
      const nodes = await presentNodes(context)
      const reachable = peer.kind === 'user' ? nodes.filter((n) => nodeRefusal(peer.access, n.labels) === undefined) : nodes
      return { nodes: reachable.sort((a, b) => a.nodename.localeCompare(b.nodename) || a.host_id.localeCompare(b.host_id)) }
    },
  },
} satisfies Partial<AuthRoutes>
