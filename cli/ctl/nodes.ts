// `warrenctl nodes ls` and `nodes rm`: the registered nodes, and removing one for good;
// `warrenctl get nodes` shows them as resources (kind: node). (`nodes add` makes a token:
// tokens.ts.)

import { stringify } from 'yaml'
import { formatDuration, formatExpiry, formatUtc } from '../../shared/duration.ts'
import { WarrenError } from '../../shared/errors.ts'
import type { ListedNode, PresentNode } from '../../shared/protocol/admin.ts'
import { formatLabels, matchesSelectors, parseSelectors, type Selector } from '../../shared/selectors.ts'
import { FORMAT_FLAG, type Format, formatData, formatList } from '../output.ts'
import { formatTable } from '../table.ts'
import type { AdminConnection } from './admin-client.ts'
import { ctlCommand, out } from './ctl-command.ts'

const address = (n: PresentNode | ListedNode) => (n.tunnel ? '⟵ Tunnel' : n.addr || '-')
const labels = (n: PresentNode | ListedNode) => formatLabels(n.labels)

const NODE_VIEW = {
  headers: ['Node Name', 'Node ID', 'Address', 'Labels'],
  row: (n: PresentNode) => [n.nodename, n.host_id, address(n), labels(n)],
  empty: 'No nodes found.',
}

/** `nodes ls --all`: online, offline and removed nodes, with what tells an operator whether a device is healthy. */
async function listAllNodes(admin: AdminConnection, selectors: Selector[], format: Format): Promise<void> {
  const listing = await admin.client.call('GET /v1/nodes', { query: { all: true } })
  if (!('now' in listing)) throw new WarrenError('the auth server does not list offline and removed nodes: upgrade it')
  const now = listing.now
  const nodes = listing.nodes.filter((n) => matchesSelectors(selectors, n.labels))
  if (format !== 'text') return void process.stdout.write(formatData(nodes, format))
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

/** The present nodes that match every selector. */
async function presentNodes(admin: AdminConnection, selectors: Selector[]): Promise<PresentNode[]> {
  const listing = await admin.client.call('GET /v1/nodes')
  return listing.nodes.filter((n) => matchesSelectors(selectors, n.labels)) as PresentNode[]
}

export const nodesLs = ctlCommand({
  name: 'warrenctl nodes ls',
  summary: 'the nodes whose heartbeat is fresh ("⟵ Tunnel", or the address a proxy dials)',
  operands: ['[SELECTOR...]'],
  flags: {
    all: { type: 'boolean', description: 'also nodes that are offline or removed, with Last Seen, Version, Cert Expires and Proxies' },
    format: FORMAT_FLAG,
  },
  description: 'A selector is key=value or key=* (the label with any value); several, joined by commas or given apart, must all match.',
  examples: ['warrenctl nodes ls', 'warrenctl nodes ls --all', 'warrenctl nodes ls env=lab,site=* --format=json'],
  check(_flags, args) {
    parseSelectors(args)
  },
  async run(admin, flags, args) {
    const selectors = parseSelectors(args)
    if (flags.all) return listAllNodes(admin, selectors, flags.format)
    const nodes = await presentNodes(admin, selectors)
    // The table as it always was, header and dashes even when empty: scripts read it.
    if (flags.format === 'text') out(formatTable(NODE_VIEW.headers, nodes.map(NODE_VIEW.row)))
    else process.stdout.write(formatList(nodes, flags.format, NODE_VIEW))
  },
})

/** A node as a resource, in the shape `tctl get nodes` prints (metadata.name is the host ID). */
export function nodeResource(n: PresentNode): Record<string, unknown> {
  return {
    kind: 'node',
    version: 'v1',
    metadata: { name: n.host_id, labels: n.labels },
    spec: { hostname: n.nodename, addr: n.addr, tunnel: n.tunnel, last_seen: new Date(n.last_seen).toISOString() },
  }
}

/** `warrenctl get nodes` / `get nodes/NAME` (by name or host ID): the present nodes as resources. */
export async function getNodes(admin: AdminConnection, format: Format, name?: string): Promise<void> {
  const all = await presentNodes(admin, [])
  const nodes = name === undefined ? all : all.filter((n) => n.nodename === name || n.host_id === name)
  if (name !== undefined && nodes.length === 0)
    throw new WarrenError(`node "${name}" not found among the nodes whose heartbeat is fresh ("warrenctl nodes ls --all" lists the others)`)
  const resources = nodes.map(nodeResource)
  if (format === 'json') out(JSON.stringify(resources, null, 2))
  else if (format === 'yaml') process.stdout.write(resources.map((resource) => stringify(resource)).join('---\n'))
  else out(formatTable(NODE_VIEW.headers, nodes.map(NODE_VIEW.row)))
}

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
