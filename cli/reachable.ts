// Which credentials a person's commands use, and the nodes those credentials reach: `warren
// ls` lists them, `warren ssh LOGIN@SELECTOR` runs on them. The auth server decides the list
// from the roles in the user's certificate, which the proxy vouches for; the selectors only
// narrow what it answers.

import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { isHostId, nodenameProblem } from '../shared/nodename.ts'
import type { PresentNode } from '../shared/protocol/admin.ts'
import { formatLabels, matchesSelectors, type Selector } from '../shared/selectors.ts'
import { defineFlags } from './flags.ts'
import { logins } from './login.ts'
import { defaultProfileDir, PROFILE_FILES, proxyApiClient } from './profile.ts'

export const USER_FLAGS = defineFlags({
  identity: {
    type: 'path',
    placeholder: 'DIR',
    defaultText: '$WARREN_HOME (~/.warren) when it holds credentials, else the login of warren login',
    description: 'directory with the credentials of "warren login" or "warrenctl auth sign"',
  },
  proxy: { type: 'string', placeholder: 'HOST:PORT', defaultText: 'the first proxy of the credentials', description: "a proxy's web port" },
  cluster: { type: 'string', placeholder: 'NAME', description: 'the cluster of warren login to use, when logged in to several' },
})

/**
 * The credentials directory: --identity; else $WARREN_HOME itself when `auth sign` wrote
 * there; else the login of `warren login` (of --cluster, when there are several).
 */
export function credentialsDir(flags: { identity?: string; cluster?: string }): string {
  if (flags.identity !== undefined) return flags.identity
  const home = defaultProfileDir()
  if (flags.cluster === undefined && existsSync(join(home, PROFILE_FILES.profile))) return home
  const found = logins().filter(({ profile }) => flags.cluster === undefined || profile.cluster_name === flags.cluster)
  if (found.length === 1) return found[0].dir
  if (found.length > 1)
    throw new UsageError(
      `logged in to several clusters (${found
        .map(({ profile }) => profile.cluster_name)
        .sort()
        .join(', ')}): pick one with --cluster=NAME`,
    )
  const which = flags.cluster === undefined ? 'any cluster' : `cluster "${flags.cluster}"`
  throw new WarrenError(`not logged in to ${which}: log in with "warren login --proxy=HOST:PORT" (or pass --identity=DIR)`)
}

/** The present nodes the user of `dir` may reach that match every selector, sorted by name. */
export async function reachableNodes(dir: string, proxy: string | undefined, selectors: readonly Selector[]): Promise<PresentNode[]> {
  const client = proxyApiClient(dir, proxy)
  try {
    const { nodes } = await client.call('GET /v1/user/nodes')
    // warren ls keeps its fields; what the web console's Nodes page shows besides stays out.
    return checkedNodes(nodes)
      .filter((node) => matchesSelectors(selectors, node.labels))
      .map(({ host_id, nodename, addr, tunnel, labels, last_seen }) => ({ host_id, nodename, addr, tunnel, labels, last_seen }))
  } finally {
    await client.close()
  }
}

/**
 * `nodes` as the proxy listed them, once each host ID and name has its shape: they go into
 * ssh's command line and its ProxyCommand's `%h`, which a shell expands (OpenSSH before 9.6
 * passes any character on). Throws when one does not.
 */
export function checkedNodes(nodes: PresentNode[]): PresentNode[] {
  for (const node of nodes) {
    if (typeof node.host_id !== 'string' || !isHostId(node.host_id) || typeof node.nodename !== 'string' || nodenameProblem(node.nodename)) {
      throw new WarrenError(`the proxy's list of nodes holds one that is no node of a cluster (host ID ${JSON.stringify(node.host_id)}): nothing was run`)
    }
  }
  return nodes
}

/** How a tunnel node's address shows in every list. */
export const nodeAddress = (node: PresentNode) => (node.tunnel ? '⟵ Tunnel' : node.addr || '-')

/** `warren ls`'s table: Node Name, Address, Labels (sorted `k=v`). */
export const NODE_VIEW = {
  headers: ['Node Name', 'Address', 'Labels'],
  row: (node: PresentNode) => [node.nodename, nodeAddress(node), formatLabels(node.labels)],
  empty: 'No nodes found.',
}
