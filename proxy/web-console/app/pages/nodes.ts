// The nodes the user's roles allow, searchable by name and by label selector, each with
// links that open a terminal to it as one of the logins the roles allow.

import { call, currentSession } from '../api.ts'
import { h, replace, table } from '../dom.ts'
import { relative, utcTime } from '../format.ts'
import { navigate, type RouteParams } from '../router.ts'

/** A node as GET /web/api/user/nodes lists it; fields past nodename may be absent. */
export interface WebNode {
  nodename: string
  host_id: string
  addr: string
  tunnel: boolean
  labels: Record<string, string>
  last_seen: number | null
  status?: string
  version?: string | null
  cert_expires?: number | null
  proxies?: { holding: number; live: number } | null
  logins?: string[]
}

/** `env=prod,role=*`: every pair must match; `*` matches any value of a label that is set. */
export function parseSelector(selector: string): [string, string][] {
  return selector
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map((part) => {
      const at = part.indexOf('=')
      return at < 0 ? [part, '*'] : [part.slice(0, at).trim(), part.slice(at + 1).trim()]
    })
}

function matches(node: WebNode, name: string, selector: [string, string][]): boolean {
  if (name && !node.nodename.toLowerCase().includes(name.toLowerCase())) return false
  return selector.every(([key, value]) => key in node.labels && (value === '*' || node.labels[key] === value))
}

export async function nodesPage(main: HTMLElement, params: RouteParams): Promise<void> {
  // all=true: the offline nodes too, with when they were last seen.
  const { nodes, now } = await call<{ nodes: WebNode[]; now?: number }>('GET', 'user/nodes?all=true')
  const name = h('input', { type: 'search', name: 'name', placeholder: 'name', 'aria-label': 'Search by name', value: params.query.get('name') ?? '' })
  const labels = h('input', { type: 'search', name: 'labels', placeholder: 'key=value,key=*', 'aria-label': 'Label selector', value: params.query.get('labels') ?? '' })
  const list = h('div', { class: 'list' })
  const draw = () => {
    const shown = nodes.filter((node) => matches(node, name.value.trim(), parseSelector(labels.value)))
    // The filters go into the address, so a reload or a shared link shows the same list.
    const query = new URLSearchParams()
    if (name.value.trim()) query.set('name', name.value.trim())
    if (labels.value.trim()) query.set('labels', labels.value.trim())
    history.replaceState(null, '', `/web/nodes${query.size ? `?${query}` : ''}`)
    replace(list, shown.length === 0 ? h('p', { class: 'empty' }, nodes.length === 0 ? 'No nodes your roles allow.' : 'No node matches.') : nodeTable(shown, now ?? Date.now()))
  }
  name.addEventListener('input', draw)
  labels.addEventListener('input', draw)
  main.append(h('h1', {}, 'Nodes'), h('div', { class: 'filters' }, name, labels), list)
  draw()
}

/** `now`: the server's clock, which the times are relative to. */
function nodeTable(nodes: WebNode[], now: number): HTMLTableElement {
  return table(
    ['Node', 'Status', 'Address', 'Proxies', 'Version', 'Certificate expires', 'Labels', 'Connect'],
    nodes.map((node) => {
      const online = (node.status ?? 'online') === 'online'
      return [
        h('span', { class: 'node-name' }, node.nodename),
        h(
          'span',
          { class: `badge ${online ? 'online' : 'offline'}` },
          online ? 'online' : (node.status ?? 'offline'),
          node.last_seen ? h('small', {}, ` seen ${relative(node.last_seen, now)}`) : null,
        ),
        node.tunnel ? '⟵ Tunnel' : `direct ${node.addr}`,
        node.proxies ? `${node.proxies.holding} of ${node.proxies.live}` : node.tunnel ? '' : '—',
        node.version ?? '',
        node.cert_expires ? h('span', { title: utcTime(node.cert_expires) }, relative(node.cert_expires, now)) : '',
        h(
          'span',
          { class: 'labels' },
          ...Object.entries(node.labels)
            .sort()
            .map(([key, value]) => h('code', {}, `${key}=${value}`)),
        ),
        online ? connectLinks(node) : '',
      ]
    }),
  )
}

/** One link per login the roles allow (on this node, or the session's); a field to type one when neither says. */
function connectLinks(node: WebNode): HTMLElement {
  const to = (login: string) => `/web/terminal?${new URLSearchParams({ node: node.nodename, login })}`
  const logins = node.logins ?? currentSession()?.logins
  if (logins && logins.length > 0) return h('span', { class: 'connect' }, ...logins.map((login) => h('a', { href: to(login), class: 'button' }, login)))
  const login = h('input', { name: 'login', placeholder: 'login', 'aria-label': `Login on ${node.nodename}`, size: 8 })
  const form = h('form', { class: 'connect' }, login, h('button', { type: 'submit' }, 'Connect'))
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    if (login.value.trim()) navigate(to(login.value.trim()))
  })
  return form
}
