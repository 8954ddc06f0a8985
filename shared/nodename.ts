// What a host may be called: the auth server's rule for a joining host's name, which
// `warren install` applies too, so that a config the auth server would refuse is never
// written.

import { CLUSTER_SERVER_NAME } from './protocol/tunnel.ts'

const NODENAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$/
/** A host ID's shape: a node named like one could be mistaken for that host when routed to. */
const HOST_ID_LIKE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Names no certificate of a host may carry, whoever asks. */
export function reservedName(name: string): boolean {
  const lower = name.toLowerCase()
  return lower === 'localhost' || lower.endsWith('.localhost') || lower === CLUSTER_SERVER_NAME || lower.endsWith('.invalid')
}

/** Whether `value` has a host ID's shape (a UUID the auth server chose). */
export function isHostId(value: string): boolean {
  return HOST_ID_LIKE.test(value)
}

/** What is wrong with `nodename` as a node's name (for a 400 naming `field`), or undefined. */
export function nodenameProblem(nodename: string, field = 'nodename'): string | undefined {
  if (!NODENAME.test(nodename)) return `field "${field}" must be a host name (letters, digits, ".", "_", "-")`
  if (reservedName(nodename)) return `field "${field}": "${nodename}" is a reserved name`
  if (HOST_ID_LIKE.test(nodename)) return `field "${field}" must not look like a host ID`
  return undefined
}
