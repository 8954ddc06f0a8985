// What a person logged in may list of the fleet: the nodes their roles let them reach.

import type { ListedNode, PresentNode } from './admin.ts'

/**
 * A node the caller may reach, with what the web console's Nodes page shows of it: its
 * state (online, offline, locked), its agent's version, when its certificate expires, how
 * many live proxies hold its tunnel, and the logins the caller's roles allow on it.
 */
export interface ReachableNode extends PresentNode {
  status: ListedNode['status']
  version: string | null
  cert_expires: number | null
  proxies: ListedNode['proxies']
  logins: string[]
}

/** GET /v1/user/nodes: the present nodes (all=true: the offline ones too) the caller's access allows, sorted by name. */
export interface ReachableNodes {
  now: number
  nodes: ReachableNode[]
}
