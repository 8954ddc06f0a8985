// What a node trusts (the host CAs it accepts servers by, the user CA keys it accepts logins
// by) reaches it through proxies, which are not trusted with it: a proxy's keys prove only
// that it is a proxy of this cluster. So the auth server signs the set with the keys of the
// host CAs, and a node takes a new set only when a host CA it already trusts signed it (at
// its join: the CA it pinned) and the set is newer than the one it holds. A stolen proxy key
// can neither add a CA nor bring back one a rotation dropped. SECURITY.md, "What proxies
// cannot change".
//
// The set names each host CA's SSH key too, which the SSH host certificates hosts are given
// must be signed with (renewed-certificates.ts). Hosts of earlier versions check `signatures`
// over the exact fields they know, so those stay as they were, and the SSH keys come with
// signatures of their own over the whole set (`signatures_v2`, for another purpose). A host
// that holds the SSH keys takes a set without them (from an auth server of an earlier
// version, or a relay that left them out) only for the host CAs it already trusts, keeping
// the keys it holds: else a relay could take them out at a rotation and hand it an SSH CA of
// its own.

import { type KeyObject, sign, verify, X509Certificate } from 'node:crypto'
import { caPin } from './pin.ts'
import { list, number, type Out, object, optional, text, texts } from './protocol/shape.ts'
import { parseSshPublicKey } from './ssh-cert.ts'

const MAX_CAS = 16
const MAX_PEM = 16_384
const MAX_SSH_KEY = 1024
/** What the signatures are over, so that no other signed message of ours can pass for one. */
const PURPOSE = 'warren trusted CAs v1'
/** What `signatures_v2` are over: every field, the host CAs' SSH keys included. */
const PURPOSE_V2 = 'warren trusted CAs v2'

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
  /** One per host CA that signed: its pin and its signature (base64), over the fields above. */
  signatures: HOST_CA_SIGNATURES,
  /**
   * The SSH public key (OpenSSH line) of each host CA, in the order of host_ca_certs: the
   * key that signs the SSH host certificates of the CA that signs the TLS ones. Absent from
   * the sets of auth servers of earlier versions.
   */
  host_ca_ssh_keys: optional(texts(MAX_CAS)),
  /** As `signatures`, over every field, host_ca_ssh_keys included; with host_ca_ssh_keys only. */
  signatures_v2: optional(HOST_CA_SIGNATURES),
})
export type TrustStatement = Out<typeof TRUST_STATEMENT>
/** What signTrust signs: a set without host CA SSH keys is signed for hosts of earlier versions only. */
export type UnsignedTrust = Omit<TrustStatement, 'signatures' | 'signatures_v2' | 'host_ca_ssh_keys'> & { host_ca_ssh_keys?: string[] }
/** What a host trusts, as checkTrust judges a set against it. */
export interface HeldTrust {
  clusterName: string
  hostCAPems: string[]
  /** The host CAs' SSH keys, in the order of hostCAPems; undefined when the host holds none (a set from before them). */
  hostCASshKeys?: string[]
  userCASshKeys: string[]
  version: number
}

export interface TrustSigner {
  certPem: string
  key: KeyObject
}

/**
 * The set signed by every one of `signers` (the host CAs whose keys the auth server holds):
 * `signatures` for hosts of every version, and with the host CAs' SSH keys, `signatures_v2`
 * over them too.
 */
export function signTrust(statement: UnsignedTrust, signers: TrustSigner[]): TrustStatement {
  const signatures = signWithHostCAs(PURPOSE, trustPayload(statement), signers)
  if (statement.host_ca_ssh_keys === undefined) return { ...statement, signatures, host_ca_ssh_keys: undefined, signatures_v2: undefined }
  return { ...statement, host_ca_ssh_keys: statement.host_ca_ssh_keys, signatures, signatures_v2: signWithHostCAs(PURPOSE_V2, trustPayloadV2(statement), signers) }
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
 * set can never come back, or with the host CAs' SSH keys a host held none of); false when
 * it is what is held; throws TrustRefused otherwise.
 */
export function checkTrust(statement: TrustStatement | undefined, held: HeldTrust): boolean {
  if (!statement) throw new TrustRefused('the CAs came without the auth server’s signature')
  if (statement.cluster_name !== held.clusterName)
    throw new TrustRefused(`the CAs are for cluster ${JSON.stringify(statement.cluster_name)}, not ${JSON.stringify(held.clusterName)}`)
  if (statement.host_ca_certs.length === 0 || statement.user_ca_ssh_keys.length === 0) throw new TrustRefused('the set names no host CA or no user CA')
  for (const pem of statement.host_ca_certs) {
    if (pem.length > MAX_PEM) throw new TrustRefused('a host CA certificate is too long')
  }
  const sshKeys = statement.host_ca_ssh_keys
  if (sshKeys === undefined) {
    if (!signedByHostCA(PURPOSE, trustPayload(statement), statement.signatures, held.hostCAPems)) throw new TrustRefused('no host CA this node trusts signed the set')
  } else {
    if (!statement.signatures_v2 || !signedByHostCA(PURPOSE_V2, trustPayloadV2(statement), statement.signatures_v2, held.hostCAPems))
      throw new TrustRefused('no host CA this node trusts signed the set with its host CA SSH keys')
    if (sshKeys.length !== statement.host_ca_certs.length) throw new TrustRefused('the set does not name one SSH key per host CA')
    for (const line of sshKeys) {
      if (line.length > MAX_SSH_KEY) throw new TrustRefused('a host CA SSH key is too long')
      try {
        parseSshPublicKey(line)
      } catch (error) {
        throw new TrustRefused(`a host CA SSH key cannot be read: ${(error as Error).message}`)
      }
    }
  }
  const sameHostCAs = sameList(statement.host_ca_certs, held.hostCAPems)
  // Taking a set without them would drop the keys, and with them the check of SSH host certificates.
  if (sshKeys === undefined && held.hostCASshKeys !== undefined && !sameHostCAs)
    throw new TrustRefused(
      'the set names other host CAs without their SSH keys, which this host holds (it comes from an auth server of an earlier version, or a relay took them out)',
    )
  const same = sameHostCAs && sameList(statement.user_ca_ssh_keys, held.userCASshKeys)
  if (same && sshKeys !== undefined && held.hostCASshKeys === undefined) return statement.version >= held.version
  if (same && (sshKeys === undefined || sameList(sshKeys, held.hostCASshKeys!))) return statement.version > held.version
  if (statement.version <= held.version) throw new TrustRefused(`the set (version ${statement.version}) is not newer than the one held (version ${held.version})`)
  return true
}

/**
 * The host CAs and their SSH keys a host trusts once it took `statement` (checkTrust): a set
 * without SSH keys keeps those held for the same host CAs.
 */
export function trustedHostCAs(statement: TrustStatement, held: { hostCAPems: string[]; hostCASshKeys?: string[] }): { hostCAPems: string[]; hostCASshKeys?: string[] } {
  const hostCAPems = statement.host_ca_certs
  if (statement.host_ca_ssh_keys !== undefined) return { hostCAPems, hostCASshKeys: statement.host_ca_ssh_keys }
  return { hostCAPems, hostCASshKeys: sameList(hostCAPems, held.hostCAPems) ? held.hostCASshKeys : undefined }
}

function trustPayload(statement: UnsignedTrust): unknown[] {
  return [statement.cluster_name, statement.version, statement.host_ca_certs, statement.user_ca_ssh_keys]
}

function trustPayloadV2(statement: UnsignedTrust): unknown[] {
  return [...trustPayload(statement), statement.host_ca_ssh_keys]
}

function signedBytes(purpose: string, payload: unknown[]): Buffer {
  return Buffer.from(`${purpose}\n${JSON.stringify(payload)}`)
}

/** The same entries in the same order (the first host CA signs); PEMs as stored may differ in their trailing newline. */
function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((value, index) => value.trim() === b[index]!.trim())
}
