// `warrenctl nodes ls`, `nodes label` and `nodes rm`: the registered nodes, the labels the
// cluster assigns them, and removing one for good; `warrenctl get nodes` shows them as
// resources (kind: node). (`nodes add` makes a token: tokens.ts.)

import { stringify } from 'yaml'
import { formatDuration, formatExpiry, formatUtc } from '../../shared/duration.ts'
import { UsageError, WarrenError } from '../../shared/errors.ts'
import { checkLabels, LabelError, labelKeyProblem } from '../../shared/labels.ts'
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
  const headers = ['Node Name', 'Node ID', 'Address', 'Status', 'Last Seen', 'Version', 'Cert Expires', 'Proxies', 'Labels']
  // Labels are the node's as the cluster judges it; Assigned, those of them the cluster gave
  // (they win over the node's own), shown once any listed node has some.
  if (nodes.some((n) => Object.keys(n.assigned_labels ?? {}).length > 0)) {
    headers.push('Assigned')
    for (const [i, n] of nodes.entries()) rows[i].push(formatLabels(n.assigned_labels ?? {}))
  }
  out(formatTable(headers, rows))
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
  description:
    'A selector is key=value or key=* (the label with any value); several, joined by commas or given apart, must all match. Labels are the node\'s own with those the cluster assigned ("warrenctl nodes label") in place of its own of the same keys; --all adds an Assigned column when a node has some.',
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

/** The most keys the auth server removes in one request (NODE_LABELS_BODY). */
const MAX_REMOVED = 64

/** The changes of `nodes label`: labels to assign, and keys whose assigned label goes. */
export interface LabelChanges {
  set: Record<string, string>
  remove: string[]
}

/** Each KEY=VALUE (several may be joined by commas) and --remove's keys, checked as the auth server would. */
export function parseLabelChanges(node: string, pairs: readonly string[], remove: readonly string[]): LabelChanges {
  if (node.includes('=')) throw new UsageError(`"warrenctl nodes label" needs the node first (its name or host ID), then KEY=VALUE..., not ${JSON.stringify(node)}`)
  // No prototype: a label named __proto__ is a label like any other.
  let set: Record<string, string> = Object.create(null)
  for (const pair of pairs) {
    for (const item of pair.split(',')) {
      if (item.trim() === '') continue
      const eq = item.indexOf('=')
      if (eq <= 0) throw new UsageError(`invalid label ${JSON.stringify(item.trim())}: use key=value to assign a label (env=prod), --remove=key to remove one`)
      set[item.slice(0, eq).trim()] = item.slice(eq + 1).trim()
    }
  }
  try {
    set = checkLabels(set)
  } catch (error) {
    if (error instanceof LabelError) throw new UsageError(error.message)
    throw error
  }
  const keys = [...new Set(remove)]
  for (const key of keys) {
    const problem = labelKeyProblem(key)
    if (problem) throw new UsageError(`--remove: ${JSON.stringify(key)} ${problem}`)
    if (Object.hasOwn(set, key)) throw new UsageError(`label "${key}" is both assigned and removed: give one of ${key}=VALUE and --remove=${key}`)
  }
  if (keys.length > MAX_REMOVED) throw new UsageError(`--remove takes at most ${MAX_REMOVED} keys at once, not ${keys.length}`)
  if (Object.keys(set).length === 0 && keys.length === 0) throw new UsageError('nothing to change: give KEY=VALUE to assign a label, or --remove=KEY to remove one')
  return { set, remove: keys }
}

export const nodesLabel = ctlCommand({
  name: 'warrenctl nodes label',
  summary: "assign labels to a node (name or host ID), or remove them: they win over the node's own labels of the same keys",
  operands: ['NODE', '[KEY=VALUE...]'],
  flags: {
    remove: { type: 'list', noun: 'key', description: "keys whose assigned label goes (the node's own label of that key, if any, counts again)" },
  },
  description:
    "The cluster judges access, and nodes ls and warren ls list nodes, by the node's own labels (its config, --labels) with those assigned in place of its own of the same keys, so a role that selects by an assigned label cannot be reached by a device that merely reports it; of the keys the auth server's assigned_label_keys names, a node carries only those assigned. A KEY=VALUE replaces an assigned label of that key; the others stay. A token's --labels (\"warrenctl nodes add --labels\") are assigned to the node that joins with it.",
  examples: ['warrenctl nodes label pi-1 env=prod site=berlin', 'warrenctl nodes label pi-1 --remove=site', 'warrenctl nodes label pi-1 env=lab --remove=owner,site'],
  check(flags, args) {
    parseLabelChanges(args[0], args.slice(1), flags.remove ?? [])
  },
  async run(admin, flags, args) {
    const body = parseLabelChanges(args[0], args.slice(1), flags.remove ?? [])
    const changed = await admin.client.call('POST /v1/nodes/:node/labels', { params: { node: args[0] }, body })
    const assigned = formatLabels(changed.assigned_labels)
    out(`Node ${changed.nodename} (${changed.host_id}) ${assigned ? `now has the assigned labels ${assigned}` : 'now has no assigned labels'}`)
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
