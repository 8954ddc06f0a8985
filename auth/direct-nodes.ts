// Direct nodes heartbeat to the auth server themselves and are dialled by the proxies, at the
// address their heartbeats report: `ssh_service.public_addr`, or their listening port on
// the address the auth server sees them at. Proxies ask for that address book; `nodes ls`
// shows the same addresses.

import { joinHostPort, splitHostPort } from '../shared/address.ts'
import { UsageError } from '../shared/errors.ts'
import { ProtocolError } from '../shared/protocol/errors.ts'
import type { DirectNodeEntry } from '../shared/protocol/proxies.ts'
import type { Presence } from './nodes.ts'

/**
 * Where proxies reach a node that heartbeats from `seenFrom` (an IP) and reports `reported`
 * (`host:port`, or `:port` for its port on `seenFrom`). A node that reports nothing (an
 * older agent) is shown by its IP alone; proxies then dial the default port.
 */
export function serviceAddress(seenFrom: string, reported: string | undefined): string {
  if (reported === undefined) return seenFrom
  const bad = () => new ProtocolError('POST /v1/heartbeat', 'service_addr', 'field "service_addr" must be HOST:PORT, or :PORT for the address the heartbeat comes from')
  if (reported.startsWith(':')) {
    const port = Number(reported.slice(1))
    if (!/^\d{1,5}$/.test(reported.slice(1)) || port < 1 || port > 65535) throw bad()
    return joinHostPort(seenFrom, port)
  }
  try {
    const { host, port } = splitHostPort(reported)
    if (port === undefined || port === 0) throw bad()
    return joinHostPort(host, port)
  } catch (error) {
    if (error instanceof UsageError) throw bad()
    throw error
  }
}

/** What a proxy needs to dial a direct node: the nodes present without a tunnel. */
export function directNodes(present: Presence[]): DirectNodeEntry[] {
  return present.filter((p) => !p.tunnel && p.addr !== '').map((p) => ({ host_id: p.hostId, nodename: p.nodename, addr: p.addr, labels: p.labels }))
}
