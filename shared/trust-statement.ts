// What a node trusts (the host CAs it accepts servers by, the user CA keys it accepts logins
// by) reaches it through proxies, which are not trusted with it: a proxy's keys prove only
// that it is a proxy of this cluster. So the auth server signs the set with the keys of the
// host CAs, and a node takes a new set only when a host CA it already trusts signed it (at
// its join: the CA it pinned) and the set is newer than the one it holds. A stolen proxy key
// can neither add a CA nor bring back one a rotation dropped. SECURITY.md, "What proxies
// cannot change".

import { type KeyObject, sign, verify, X509Certificate } from 'node:crypto'
import { caPin } from './pin.ts'
import { list, number, type Out, object, text, texts } from './protocol/shape.ts'

const MAX_CAS = 16
const MAX_PEM = 16_384
/** What the signatures are over, so that no other signed message of ours can pass for one. */
const PURPOSE = 'warren trusted CAs v1'

export const HOST_CA_SIGNATURES = list(object({ ca_pin: text({ max: 128 }), signature: text({ max: 1024 }) }), MAX_CAS)
/** Signatures by host CAs, each named by its CA's pin. */
export type HostCASignatures = Out<typeof HOST_CA_SIGNATURES>

export const TRUST_STATEMENT = object({
  cluster_name: text({ max: 256 }),
  /**
   * Grows with every change of the set: the sum of both CAs' times of their last rotation
   * step (epoch ms, as the backend holds them; each only grows). A node refuses a different
   * set that is not newer than its own.
   */
  version: number({ atLeast: 0, expected: 'a version' }),
  host_ca_certs: texts(MAX_CAS),
  user_ca_ssh_keys: texts(MAX_CAS),
  /** One per host CA that signed: its pin and its signature (base64). */
  signatures: HOST_CA_SIGNATURES,
})
export type TrustStatement = Out<typeof TRUST_STATEMENT>

export interface TrustSigner {
  certPem: string
  key: KeyObject
}

/** The set signed by every one of `signers` (the host CAs whose keys the auth server holds). */
export function signTrust(statement: Omit<TrustStatement, 'signatures'>, signers: TrustSigner[]): TrustStatement {
  return { ...statement, signatures: signWithHostCAs(PURPOSE, trustPayload(statement), signers) }
}

/** `payload` (JSON: an array, so that its order is fixed) signed for `purpose` by each of `signers`. */
export function signWithHostCAs(purpose: string, payload: unknown[], signers: TrustSigner[]): HostCASignatures {
  const message = signedBytes(purpose, payload)
  return signers.map(({ certPem, key }) => ({ ca_pin: caPin(certPem), signature: sign('sha256', message, key).toString('base64') }))
}

/** Whether one of `signatures` over `payload` for `purpose` is by a host CA among `trustedPems`. */
export function signedByHostCA(purpose: string, payload: unknown[], signatures: HostCASignatures, trustedPems: string[]): boolean {
  const message = signedBytes(purpose, payload)
  for (const pem of trustedPems) {
    const pin = caPin(pem)
    for (const { ca_pin, signature } of signatures) {
      if (ca_pin !== pin) continue
      if (verify('sha256', message, new X509Certificate(pem).publicKey, Buffer.from(signature, 'base64'))) return true
    }
  }
  return false
}

export class TrustRefused extends Error {}

/**
 * Checks `statement` against what a node holds: its cluster, the host CAs it trusts now (or
 * pinned), and the version of its set. Returns true when it may replace what is held (a
 * different set, or the same one at a newer version, which must be kept so that an older
 * set can never come back), false when it is what is held; throws TrustRefused otherwise.
 */
export function checkTrust(statement: TrustStatement | undefined, held: { clusterName: string; hostCAPems: string[]; userCASshKeys: string[]; version: number }): boolean {
  if (!statement) throw new TrustRefused('the CAs came without the auth server’s signature')
  if (statement.cluster_name !== held.clusterName)
    throw new TrustRefused(`the CAs are for cluster ${JSON.stringify(statement.cluster_name)}, not ${JSON.stringify(held.clusterName)}`)
  if (statement.host_ca_certs.length === 0 || statement.user_ca_ssh_keys.length === 0) throw new TrustRefused('the set names no host CA or no user CA')
  for (const pem of statement.host_ca_certs) {
    if (pem.length > MAX_PEM) throw new TrustRefused('a host CA certificate is too long')
  }
  if (!signedByHostCA(PURPOSE, trustPayload(statement), statement.signatures, held.hostCAPems)) throw new TrustRefused('no host CA this node trusts signed the set')
  const same = sameList(statement.host_ca_certs, held.hostCAPems) && sameList(statement.user_ca_ssh_keys, held.userCASshKeys)
  if (same) return statement.version > held.version
  if (statement.version <= held.version) throw new TrustRefused(`the set (version ${statement.version}) is not newer than the one held (version ${held.version})`)
  return true
}

function trustPayload(statement: Omit<TrustStatement, 'signatures'>): unknown[] {
  return [statement.cluster_name, statement.version, statement.host_ca_certs, statement.user_ca_ssh_keys]
}

function signedBytes(purpose: string, payload: unknown[]): Buffer {
  return Buffer.from(`${purpose}\n${JSON.stringify(payload)}`)
}

/** The same entries in the same order (the first host CA signs); PEMs as stored may differ in their trailing newline. */
function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((value, index) => value.trim() === b[index]!.trim())
}
