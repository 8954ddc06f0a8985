// GET /v1/trust/bridges: how a node that was away through a host CA rotation comes to trust
// the cluster again. Each bridge is the set of CAs as it was just before a host CA was
// dropped (the old and the new host CA), signed with both, so a node that trusts only the
// old one can take it by the signatures alone (shared/trust-statement.ts's checkTrust).
// Everything here is public: the answer may come over TLS the node cannot verify, and from
// a proxy, so the node parses it with these shapes and believes only the signatures.

import { TRUST_STATEMENT } from '../trust-statement.ts'
import { list, type Out, object, parseWith } from './shape.ts'

/** Rotations in a row a node can be bridged across at once. */
export const MAX_BRIDGES = 16

export const TRUST_BRIDGES = object({
  /** The chain out of the host CA asked about, oldest first; empty when none is kept. */
  bridges: list(TRUST_STATEMENT, MAX_BRIDGES),
  /** What the cluster trusts now, which the last bridge leads to. */
  trust: TRUST_STATEMENT,
})
export type TrustBridges = Out<typeof TRUST_BRIDGES>

/** The answer as a node reads it; a misfit is a ProtocolError naming the field. */
export const parseTrustBridges = (value: unknown): TrustBridges => parseWith('GET /v1/trust/bridges', TRUST_BRIDGES, value, 'the trust bridges: ')

/** What the query names: the pin of a host CA (shared/pin.ts). */
export const PIN_PATTERN = /^sha256:[0-9a-f]{64}$/
