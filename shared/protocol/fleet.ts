// What a person logged in may list of the fleet: the nodes their roles let them reach.

import type { PresentNode } from './admin.ts'

/** GET /v1/user/nodes: the present nodes the caller's access allows, sorted by name. */
export interface ReachableNodes {
  nodes: PresentNode[]
}
