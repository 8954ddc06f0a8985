// `warren status` for people: the status document (shared/status.ts) as rows in the layout
// of `warrenctl status` (name, two spaces, value), one block per role, and a table of the
// tunnels each role holds.

import { formatDuration, formatExpiry, formatUtc } from '../shared/duration.ts'
import { printable } from '../shared/printable.ts'
import { formatLabels } from '../shared/selectors.ts'
import type {
  AssignedLabelKeysStatus,
  AuthStatus,
  CAStatus,
  CertificateStatus,
  NodeStatus,
  ProcessStatus,
  ProxyStatus,
  RecordingDirStatus,
  WarrenStatus,
} from '../shared/status.ts'
import { formatTable } from './table.ts'

/** Tunnels listed in text; JSON lists all of them (a proxy may hold thousands). */
const MAX_TUNNEL_ROWS = 100

type Row = [name: string, value: string]

export function formatStatus(status: WarrenStatus, now = Date.now()): string {
  const blocks = [rows(processRows(status.process, now))]
  for (const role of status.process.roles) {
    if (role === 'auth') blocks.push(status.auth ? rows(authRows(status.auth, now)) : starting('Auth server'))
    if (role === 'proxy') blocks.push(status.proxy ? proxyBlock(status.proxy, now) : starting('Proxy'))
    if (role === 'node') blocks.push(status.node ? nodeBlock(status.node, now) : starting('Node'))
  }
  return blocks.join('\n')
}

function rows(list: Row[]): string {
  const width = Math.max(...list.map(([name]) => name.length))
  return list.map(([name, value]) => `${name.padEnd(width)}  ${printable(value)}`.trimEnd() + '\n').join('')
}

function starting(role: string): string {
  return rows([[role, 'starting']])
}

const ago = (time: string, now: number) => `${formatUtc(Date.parse(time))} (${formatDuration(now - Date.parse(time))} ago)`
const proxies = (n: number) => `${n} ${n === 1 ? 'proxy' : 'proxies'}`

function processRows(process: ProcessStatus, now: number): Row[] {
  const list: Row[] = [
    [
      'Process',
      `${process.pid}, warren ${process.version}, up ${formatDuration(now - Date.parse(process.started))}${process.fresh_image ? ' (continued in a fresh image after joining)' : ''}`,
    ],
    ['Roles', process.roles.join(', ')],
    ['Data dir', process.data_dir],
  ]
  const reload = process.last_reload
  if (reload) {
    const waiting = reload.not_applied?.length ? `, but ${reload.not_applied.join(', ')} only after a restart` : ''
    list.push(['Last reload', `${ago(reload.time, now)}, ${reload.ok ? `applied${waiting}` : `not applied: ${reload.error ?? ''}`}`])
  }
  return list
}

function authRows(auth: AuthStatus, now: number): Row[] {
  return [
    ['Auth server', `${auth.address}, cluster ${auth.cluster}, ${backendText(auth)}`],
    ['Host CA', rotation(auth.host_ca, now, 'host')],
    ['User CA', rotation(auth.user_ca, now, 'user')],
    ...auth.host_ca.pins.map((pin): Row => ['CA pin', pin]),
    ...(auth.recordings ? [['Recordings', recordingDirText(auth.recordings)] as Row] : []),
    ...(auth.assigned_label_keys ? [['Assigned keys', assignedKeysText(auth.assigned_label_keys)] as Row] : []),
  ]
}

/** The keys kept for assignments, when another live auth server lists others (auth/assigned-label-keys.ts). */
function assignedKeysText(keys: AssignedLabelKeysStatus): string {
  const list = (names: string[]) => (names.length === 0 ? 'none' : names.join(', '))
  if (keys.differing.length === 0) return list(keys.effective)
  const peers = keys.differing.map((peer) => `${peer.auth_server_id}: ${list(peer.keys)}`).join('; ')
  return `${list(keys.effective)}, NOT the same on every auth server (here: ${list(keys.own)}; ${peers}): every one keeps the keys any lists`
}

/** Whether the other live auth servers of the backend share recording_dir (auth/recording-dir-check.ts). */
function recordingDirText(recordings: RecordingDirStatus): string {
  const { dir, shared_with: shared, not_shared_with: notShared } = recordings
  const others = shared.length + notShared.length
  const servers = (n: number) => `${n} other auth server${n === 1 ? '' : 's'}`
  if (notShared.length > 0)
    return `${dir}, NOT shared with ${notShared.length} of ${servers(others)} (${notShared.join(', ')}): their recordings are not seen here, nor these there`
  return others === 0 ? `${dir}, no other auth server live` : `${dir}, shared with ${servers(others)}`
}

/** Within this of its CA's expiry, a status says how many days are left. */
const CA_EXPIRY_NEAR_MS = 365 * 24 * 3600_000

/**
 * `expires 05 Dec 36 12:00 UTC`, with the days left once they are under a year; past it, how
 * to rotate the CA (`type`). Whether it has expired is the auth server's word (`expired`): its
 * clock decides what it signs. From an auth server of an earlier version, which does not say,
 * this host's clock decides.
 */
export function caExpiryText(expiresMs: number, expired: boolean | undefined, now: number, type: 'host' | 'user'): string {
  const left = expiresMs - now
  if (expired ?? left <= 0) return `EXPIRED ${formatUtc(expiresMs)}: it signs nothing until rotated (warrenctl auth rotate --type=${type})`
  const days = Math.max(0, Math.floor(left / (24 * 3600_000)))
  return `expires ${formatUtc(expiresMs)}${left < CA_EXPIRY_NEAR_MS ? ` (in ${days} day${days === 1 ? '' : 's'}: rotate it before then)` : ''}`
}

function rotation(ca: CAStatus, now: number, type: 'host' | 'user'): string {
  const expires = `, ${caExpiryText(Date.parse(ca.expires), ca.expired, now, type)}`
  if (ca.phase !== 'standby') return `rotation in progress: phase ${ca.phase} (${ca.mode})${expires}`
  return `${ca.last_rotated ? `rotated ${formatUtc(Date.parse(ca.last_rotated))}` : 'never updated'}${expires}`
}

function certificate(cert: CertificateStatus, now: number): string {
  return `expires ${formatExpiry(Date.parse(cert.not_after), now)}${cert.issuer_pin ? '' : ', from a CA no longer trusted'}`
}

function proxyBlock(proxy: ProxyStatus, now: number): string {
  const { listen, tunnels } = proxy
  const list: Row[] = [
    ['Proxy', `${proxy.proxy_id} (${proxy.nodename}), cluster ${proxy.cluster}`],
    ['Web', listen.web],
    ['Tunnel port', listen.multiplexed ? `${listen.tunnel} (the web port, routed by ALPN)` : listen.tunnel],
    ['Certificate', certificate(proxy.certificate, now)],
    ['Live set', proxies(proxy.live_set.length)],
    ['Tunnels', String(tunnels.count)],
  ]
  // A disk that refused the identity's last save: the proxy runs on it from memory (shared/identity-keeper.ts).
  if (proxy.identity_unsaved) list.push(['Identity', `not saved since ${formatUtc(Date.parse(proxy.identity_unsaved.since))}: ${printable(proxy.identity_unsaved.error)}`])
  if (proxy.acme) {
    const { certificate: served, domains, last_error } = proxy.acme
    const state = served ? `expires ${formatExpiry(Date.parse(served.not_after), now)}` : `none yet${last_error ? `: ${last_error}` : ''}`
    list.push(['ACME', `${domains.join(', ')}: ${state}`])
  }
  const shown = tunnels.hosts.slice(0, MAX_TUNNEL_ROWS)
  const table =
    shown.length === 0
      ? ''
      : '\n' +
        formatTable(
          ['Node Name', 'Node ID', 'From', 'Since', 'Pacing'],
          shown.map((t) => [t.nodename, t.host_id, t.remote_addr, ago(t.since, now), t.pacing ?? 'off']),
        )
  const more = tunnels.hosts.length > shown.length ? `(${tunnels.hosts.length - shown.length} more: --format=json lists them all)\n` : ''
  return rows(list) + table + more
}

function nodeBlock(node: NodeStatus, now: number): string {
  const list: Row[] = [
    ['Node', `${node.host_id} (${node.nodename}), cluster ${node.cluster}`],
    ['Joined via', node.auth_server],
    ['Certificate', certificate(node.certificate, now)],
  ]
  const labels = Object.entries(node.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
  if (labels) list.push(['Labels', labels])
  const assigned = formatLabels(node.assigned_labels?.labels ?? {})
  // The cluster's word on the node, winning over its own labels of the same keys where it judges access.
  if (assigned) list.push(['Assigned labels', `${assigned} (changed ${formatUtc(Date.parse(node.assigned_labels!.changed!))})`])
  if (node.clock?.problem) list.push(['Clock', `${node.clock.now} is ${node.clock.problem}: ${printable(node.clock.evidence ?? '')}; TLS with the cluster fails until it is set`])
  if (node.renewal?.failures) {
    const { failures, last_error, next_try } = node.renewal
    list.push([
      'Renewal',
      `${failures} failed in a row (${printable(last_error ?? '')}); next try ${formatUtc(Date.parse(next_try))} (in ${formatDuration(Math.max(0, Date.parse(next_try) - now))})`,
    ])
  }
  // A disk that refused the identity's last save: the node runs on it from memory (shared/identity-keeper.ts).
  if (node.identity_unsaved) list.push(['Identity', `not saved since ${formatUtc(Date.parse(node.identity_unsaved.since))}: ${printable(node.identity_unsaved.error)}`])
  if (node.events) list.push(['Audit events', `${node.events.queued} waiting for the auth server, ${node.events.dropped} dropped`])
  const { tunnel, direct } = node
  // What a proxy sent without the auth server's signature: worth a look (SECURITY.md, "A stolen proxy").
  const refused = [
    node.trust.refused > 0 ? `${node.trust.refused} set(s) of CAs or certificates` : '',
    (tunnel?.live_sets_refused ?? 0) > 0 ? `${tunnel!.live_sets_refused} live proxy set(s)` : '',
  ].filter(Boolean)
  if (refused.length > 0) list.push(['Refused', `${refused.join(', ')} not signed by a trusted CA`])
  const refusedLabels = node.assigned_labels?.refused ?? 0
  if (refusedLabels > 0) list.push(['Refused labels', `${refusedLabels} set(s) of assigned labels not for this node or not signed by a trusted CA`])
  if (direct) {
    const beats = direct.heartbeats
    list.push(['Mode', `direct: proxies dial ${direct.listen_addr}`])
    list.push(['Heartbeats', `${beats.ok} accepted, ${beats.failed} failed${beats.last_ok ? `, last ${ago(beats.last_ok, now)}` : ''}`])
  }
  if (!tunnel) return rows(list)
  list.push(['Mode', `tunnel: dialling ${tunnel.address}`])
  list.push(['Live set', tunnel.live_set ? proxies(tunnel.live_set.length) : 'not announced yet'])
  list.push(['Tunnels', tunnel.live_set ? `${tunnel.proxies.length} of ${tunnel.live_set.length}` : String(tunnel.proxies.length)])
  const table =
    tunnel.proxies.length === 0
      ? ''
      : '\n' +
        formatTable(
          ['Proxy ID', 'Since', 'TLS Session', 'Pacing'],
          tunnel.proxies.map((p) => [p.proxy_id, ago(p.since, now), p.resumed ? 'resumed' : 'new', p.pacing ?? 'off']),
        )
  return rows(list) + table
}

/** The backend, and an etcd reached in the clear named as such (auth_service.storage.insecure_plaintext). */
function backendText(auth: AuthStatus): string {
  const storage = auth.storage
  if (storage?.type !== 'etcd') return `${auth.backend} backend`
  if (storage.plaintext_peers.length > 0) return `etcd backend, WITHOUT TLS to ${storage.plaintext_peers.join(', ')}`
  return `etcd backend${storage.tls ? ' over TLS' : ' on loopback'}`
}
