// Labels the cluster assigns to a host: given by the token it joined with (`warrenctl nodes
// add --labels`) or by an admin (`warrenctl nodes label`). A node reports labels of its own
// (its config), and a stolen device can report any; an assigned label wins over the node's
// own of the same key wherever the cluster judges or lists nodes (proxies, `nodes ls`,
// `warren ls`, selectors), so a role that selects by an assigned key cannot be reached by a
// device that merely says it carries it. SECURITY.md, "A stolen device".
//
// The node judges users' roles against its labels too, so it learns its assigned labels:
// from its join, renewals and recoveries, a direct node's heartbeats, and a tunnel's proxy
// when an admin changes them. Those pass through proxies, which are not trusted with them,
// so the auth server signs each host's set with its host CA keys, and a node takes a set only
// for itself, signed by a host CA it trusts, and newer than the one it holds.

import { labels, number, type Out, object, text } from './protocol/shape.ts'
import { HOST_CA_SIGNATURES, type HostCASignatures, signedByHostCA, signWithHostCAs, type TrustSigner } from './trust-statement.ts'

/** What the signatures are over, so that no other signed message of ours can pass for one. */
const PURPOSE = 'warren assigned labels v1'

export const ASSIGNED_LABELS_STATEMENT = object({
  cluster_name: text({ max: 256 }),
  host_id: text({ max: 64 }),
  labels: labels(),
  /** When the set was last changed (epoch ms, the auth server's clock): a node keeps the newest. */
  changed: number({ atLeast: 0, expected: 'a time in epoch ms' }),
  signatures: HOST_CA_SIGNATURES,
})
export type AssignedLabelsStatement = Out<typeof ASSIGNED_LABELS_STATEMENT>

function payload(statement: Omit<AssignedLabelsStatement, 'signatures'>): unknown[] {
  const sorted = Object.keys(statement.labels)
    .sort()
    .map((key) => [key, statement.labels[key]])
  return [statement.cluster_name, statement.host_id, sorted, statement.changed]
}

export function signAssignedLabels(statement: Omit<AssignedLabelsStatement, 'signatures'>, signers: TrustSigner[]): AssignedLabelsStatement {
  return { ...statement, signatures: signWithHostCAs(PURPOSE, payload(statement), signers) }
}

export class AssignedLabelsRefused extends Error {
  override name = 'AssignedLabelsRefused'
}

/**
 * Whether `statement` is this host's, signed by a host CA among `trustedPems`, and newer than
 * `held` (its `changed`): true when it should replace what is held, false when it is no newer.
 * Throws AssignedLabelsRefused when it is another cluster's or host's, or not signed so.
 */
export function checkAssignedLabels(
  statement: AssignedLabelsStatement,
  host: { clusterName: string; hostId: string; trustedPems: string[] },
  held: { changed: number } | undefined,
): boolean {
  if (statement.cluster_name !== host.clusterName) throw new AssignedLabelsRefused(`the labels are for cluster ${JSON.stringify(statement.cluster_name)}`)
  if (statement.host_id !== host.hostId) throw new AssignedLabelsRefused(`the labels are for host ${statement.host_id}, not this one`)
  if (!signedByHostCA(PURPOSE, payload(statement), statement.signatures as HostCASignatures, host.trustedPems))
    throw new AssignedLabelsRefused('no host CA this node trusts signed the labels')
  return held === undefined || statement.changed > held.changed
}

/**
 * A node's labels as the cluster judges it: its own, with the assigned ones in place of its own
 * of the same keys. Of the keys in `assignedOnly` (`auth_service.assigned_label_keys`) a node
 * carries only what was assigned: its own values for them count for nothing.
 */
export function withAssigned(reported: Record<string, string>, assigned: Record<string, string> | undefined, assignedOnly: ReadonlySet<string> = NO_KEYS): Record<string, string> {
  const own = assignedOnly.size === 0 ? reported : Object.fromEntries(Object.entries(reported).filter(([key]) => !assignedOnly.has(key)))
  if (!assigned || Object.keys(assigned).length === 0) return own
  return { ...own, ...assigned }
}

const NO_KEYS: ReadonlySet<string> = new Set()
