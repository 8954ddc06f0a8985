// Direct nodes heartbeat to the auth server themselves and are dialled by the proxies, at the
// address their heartbeats report: `ssh_service.public_addr`, or their listening port on
// the address the auth server sees them at. Proxies ask for that address book; `nodes ls`
// shows the same addresses.

import { joinHostPort, splitHostPort } from '../shared/address.ts'
import { AddressList } from '../shared/address-list.ts'
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
  let address: { host: string; port?: number }
  try {
    address = splitHostPort(reported)
  } catch (error) {
    if (error instanceof UsageError) throw bad()
    throw error
  }
  if (address.port === undefined || address.port === 0) throw bad()
  const refusal = addressRefusal(address.host, seenFrom)
  if (refusal) throw new ProtocolError('POST /v1/heartbeat', 'service_addr', `field "service_addr": ${refusal}`)
  return joinHostPort(address.host, address.port)
}

/** Addresses no node serves at, wherever it is: link-local (the cloud's metadata service), multicast, unspecified. */
const NEVER_A_NODE = new AddressList(['0.0.0.0/8', '169.254.0.0/16', '224.0.0.0/3', '::/128', 'fe80::/10', 'ff00::/8'], 'address')
const LOOPBACK = new AddressList(['127.0.0.0/8', '::1'], 'address')

/**
 * Why a node may not report `host`, an IP literal, as where proxies dial it: a device could
 * otherwise make the proxies connect to the cloud's metadata service, say, or to their own
 * loopback, for every user who asks for it. The loopback is a node's only when its
 * heartbeats come from there too (a node on the auth server's host). Names are not judged
 * here: the proxy checks, before it sends a byte, that whatever answers is the node.
 */
function addressRefusal(host: string, seenFrom: string): string | undefined {
  if (NEVER_A_NODE.has(host)) return `${host} is a link-local, multicast or unspecified address, where no node is dialled`
  if (LOOPBACK.has(host) && !LOOPBACK.has(seenFrom)) return `${host} is a loopback address, and the heartbeat comes from ${seenFrom}`
  return undefined
}

/** What a proxy needs to dial a direct node: the nodes present without a tunnel. */
export function directNodes(present: Presence[]): DirectNodeEntry[] {
  return present.filter((p) => !p.tunnel && p.addr !== '').map((p) => ({ host_id: p.hostId, nodename: p.nodename, addr: p.addr, labels: p.labels }))
}
