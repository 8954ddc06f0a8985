// `warrenctl nodes ls` and `nodes rm`: the registered nodes, and removing one for good.
// (`nodes add` makes a token: tokens.ts.)

import { formatDuration, formatExpiry, formatUtc } from '../../shared/duration.ts'
import { WarrenError } from '../../shared/errors.ts'
import type { ListedNode, PresentNode } from '../../shared/protocol/admin.ts'
import { formatTable } from '../table.ts'
import type { AdminConnection } from './admin-client.ts'
import { ctlCommand, out } from './ctl-command.ts'

const address = (n: PresentNode | ListedNode) => (n.tunnel ? '⟵ Tunnel' : n.addr || '-')
const labels = (n: PresentNode | ListedNode) =>
  Object.entries(n.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')

/** `nodes ls --all`: online, offline and removed nodes, with what tells an operator whether a device is healthy. */
async function listAllNodes(admin: AdminConnection): Promise<void> {
  const listing = await admin.client.call('GET /v1/nodes', { query: { all: true } })
  if (!('now' in listing)) throw new WarrenError('the auth server does not list offline and removed nodes: upgrade it')
  const { now, nodes } = listing
  const rows = nodes.map((n) => [
    n.nodename,
    n.host_id,
    address(n),
    n.status,
    n.last_seen ? `${formatUtc(n.last_seen)} (${formatDuration(now - n.last_seen)} ago)` : '-',
    n.version ?? '-',
    n.cert_expires ? formatExpiry(n.cert_expires, now) : '-',
    n.proxies ? `${n.proxies.holding}/${n.proxies.live}` : '-',
    labels(n),
  ])
  out(formatTable(['Node Name', 'Node ID', 'Address', 'Status', 'Last Seen', 'Version', 'Cert Expires', 'Proxies', 'Labels'], rows))
}

export const nodesLs = ctlCommand({
  name: 'warrenctl nodes ls',
  summary: 'the nodes whose heartbeat is fresh ("⟵ Tunnel", or the address a proxy dials)',
  flags: { all: { type: 'boolean', description: 'also nodes that are offline or removed, with Last Seen, Version, Cert Expires and Proxies' } },
  examples: ['warrenctl nodes ls', 'warrenctl nodes ls --all'],
  async run(admin, flags) {
    if (flags.all) return listAllNodes(admin)
    const { nodes } = await admin.client.call('GET /v1/nodes')
    const rows = nodes.map((n) => [n.nodename, n.host_id, address(n), labels(n)])
    out(formatTable(['Node Name', 'Node ID', 'Address', 'Labels'], rows))
  },
})

export const nodesRm = ctlCommand({
  name: 'warrenctl nodes rm',
  summary: 'remove a node given its name or host ID: its certificates are refused everywhere from now on',
  operands: ['NODE'],
  flags: {},
  description: 'Its registration, its name and its presence go; to bring the device back, join it again with a new token.',
  examples: ['warrenctl nodes rm pi-1'],
  async run(admin, _flags, args) {
    const removed = await admin.client.call('DELETE /v1/nodes/:node', { params: { node: args[0] } })
    out(`Node ${removed.nodename} (${removed.host_id}, roles ${removed.roles.join(',')}) has been removed: its registration, its name and its presence`)
  },
})
