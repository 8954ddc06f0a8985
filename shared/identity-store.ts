// The node's identity on disk, in <data_dir>/identity/: private keys and certificates (all
// files 0600, replaced atomically) plus identity.json. A restarted node reuses it, so the
// join token is needed only once.

import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { type AssignedLabelsStatement, checkAssignedLabels } from './assigned-labels.ts'
import { fsyncDirectory, writeFileAtomic } from './files.ts'
import type { RenewedCertificates } from './protocol/hosts.ts'
import { formatLabels } from './selectors.ts'
import { type TrustStatement, trustedHostCAs } from './trust-statement.ts'

export interface NodeIdentity {
  hostId: string
  nodename: string
  clusterName: string
  roles: string[]
  /** Where the node joined: an auth server or a proxy's web address. */
  authServers: string[]
  tlsKeyPem: string
  tlsCertPem: string
  sshKeyPem: string
  sshCert: string
  hostCAPems: string[]
  /**
   * The SSH public key of each host CA, in the order of hostCAPems, as the signed set names
   * them: what SSH host certificates must be signed by (renewed-certificates.ts). Undefined
   * when the set this host took did not carry them (an identity saved before them, or a set
   * from an auth server of an earlier version): the next one that carries them brings them.
   */
  hostCASshKeys?: string[]
  userCASshKeys: string[]
  /** The version of the signed set the CAs above came from (shared/trust-statement.ts); 0 before any. */
  trustVersion: number
  /**
   * The labels the cluster assigns to this host, from the newest signed statement it took
   * (shared/assigned-labels.ts): they win over its own (its config) wherever it judges
   * access. Undefined until one came (an identity saved before them, or a host never
   * assigned any); empty labels are how assignments are removed.
   */
  assignedLabels?: HeldAssignedLabels
}

/** Assigned labels as a host holds them: what a statement said, and when the cluster changed them (epoch ms, the auth server's clock). */
export interface HeldAssignedLabels {
  labels: Record<string, string>
  changed: number
}

/** Puts renewed certificates into `identity` in place (the tunnels' TLS contexts follow it); what it trusts is the caller's to change. */
export function applyCertificates(identity: NodeIdentity, renewed: Pick<RenewedCertificates, 'tls_cert' | 'ssh_cert'>): NodeIdentity {
  identity.tlsCertPem = renewed.tls_cert
  identity.sshCert = renewed.ssh_cert
  return identity
}

/**
 * Takes `statement` into `identity` in place when it is this host's, signed by a host CA the
 * identity trusts now, and newer than the labels held; true when it did. Throws
 * AssignedLabelsRefused (changing nothing) when it is another host's or cluster's, or not
 * signed so; one no newer changes nothing. No statement changes nothing either.
 */
export function acceptAssignedLabels(identity: NodeIdentity, statement: AssignedLabelsStatement | undefined): boolean {
  if (statement === undefined) return false
  const host = { clusterName: identity.clusterName, hostId: identity.hostId, trustedPems: identity.hostCAPems }
  if (!checkAssignedLabels(statement, host, identity.assignedLabels)) return false
  identity.assignedLabels = { labels: { ...statement.labels }, changed: statement.changed }
  return true
}

/** The log's fields for the assigned labels `identity` holds. */
export function assignedLabelsFields(identity: NodeIdentity): Record<string, string | number> {
  const held = identity.assignedLabels
  if (!held) return {}
  return {
    assigned_labels: formatLabels(held.labels),
    assigned_labels_changed: held.changed,
  }
}

/** Takes the CAs of a signed set that checkTrust accepted. */
export function applyTrust(identity: NodeIdentity, trust: TrustStatement): NodeIdentity {
  const { hostCAPems, hostCASshKeys } = trustedHostCAs(trust, identity)
  identity.hostCAPems = hostCAPems
  if (hostCASshKeys) identity.hostCASshKeys = hostCASshKeys
  else delete identity.hostCASshKeys
  identity.userCASshKeys = trust.user_ca_ssh_keys
  identity.trustVersion = trust.version
  return identity
}

interface IdentityMeta {
  host_id: string
  nodename: string
  cluster_name: string
  roles: string[]
  auth_servers: string[]
  user_ca_ssh_keys: string[]
  /** Absent in identities saved before signed sets. */
  trust_version?: number
  /** The host CAs' SSH keys (NodeIdentity.hostCASshKeys); absent in identities saved before sets carried them, or that took none. */
  host_ca_ssh_keys?: string[]
  /** NodeIdentity.assignedLabels; absent in identities saved before them, or that took none. */
  assigned_labels?: HeldAssignedLabels
}

/** Where a save writes the new identity, and where the old one waits until the new one is in place. */
const NEXT = '.next'
const PREVIOUS = '.previous'

const FILES = { tlsKey: 'host.key', tlsCert: 'host.crt', sshKey: 'ssh_host_ed25519_key', sshCert: 'ssh_host_ed25519_key-cert.pub', ca: 'host_ca.pem', meta: 'identity.json' }

/** Each role that joins keeps its own identity: `identity/` for a node, `proxy-identity/` for a proxy. */
export function identityDir(dataDir: string, role = 'node'): string {
  return join(dataDir, role === 'node' ? 'identity' : `${role}-identity`)
}

/** Whether a complete identity is stored: identity.json is written last. */
export function identityExists(dataDir: string, role = 'node'): boolean {
  return existsSync(join(settledIdentityDir(dataDir, role), FILES.meta))
}

/**
 * The identity directory after a save that a crash cut short (see saveIdentity): the new
 * identity if it was written whole, else the one before it.
 */
function settledIdentityDir(dataDir: string, role: string): string {
  const dir = identityDir(dataDir, role)
  if (existsSync(join(dir, FILES.meta))) return dir
  for (const candidate of [`${dir}${NEXT}`, `${dir}${PREVIOUS}`]) {
    if (!existsSync(join(candidate, FILES.meta))) continue
    rmSync(dir, { recursive: true, force: true })
    renameSync(candidate, dir)
    fsyncDirectory(dirname(dir))
    break
  }
  return dir
}

export function loadIdentity(dataDir: string, role = 'node'): NodeIdentity | undefined {
  const dir = identityDir(dataDir, role)
  if (!identityExists(dataDir, role)) return undefined
  const read = (name: string) => readFileSync(join(dir, name), 'utf8')
  const meta = JSON.parse(read(FILES.meta)) as IdentityMeta
  const hostCAPems = splitPems(read(FILES.ca))
  // One per host CA, or none: a host without them checks SSH certificates as before them (renewed-certificates.ts).
  const hostCASshKeys = meta.host_ca_ssh_keys?.length === hostCAPems.length ? meta.host_ca_ssh_keys : undefined
  return {
    hostId: meta.host_id,
    nodename: meta.nodename,
    clusterName: meta.cluster_name,
    roles: meta.roles,
    authServers: meta.auth_servers,
    userCASshKeys: meta.user_ca_ssh_keys,
    tlsKeyPem: read(FILES.tlsKey),
    tlsCertPem: read(FILES.tlsCert),
    sshKeyPem: read(FILES.sshKey),
    sshCert: read(FILES.sshCert),
    hostCAPems,
    ...(hostCASshKeys ? { hostCASshKeys } : {}),
    trustVersion: meta.trust_version ?? 0,
    ...heldAssignedLabels(meta.assigned_labels),
  }
}

/** The assigned labels identity.json holds, when they are as saveIdentity writes them: anything else is none (the next statement brings them). */
function heldAssignedLabels(held: unknown): { assignedLabels?: HeldAssignedLabels } {
  if (typeof held !== 'object' || held === null) return {}
  const { labels, changed } = held as Record<string, unknown>
  if (typeof changed !== 'number' || !Number.isFinite(changed) || typeof labels !== 'object' || labels === null || Array.isArray(labels)) return {}
  const entries = Object.entries(labels)
  if (!entries.every(([, value]) => typeof value === 'string')) return {}
  return { assignedLabels: { labels: Object.fromEntries(entries) as Record<string, string>, changed } }
}

/**
 * Writes the whole identity to a directory of its own, which then takes the old one's place:
 * a crash leaves one whole identity (settledIdentityDir), never a new key beside an old
 * certificate, as rewriting the files one by one could (a join again after the recovery
 * window replaces every file).
 */
export function saveIdentity(dataDir: string, identity: NodeIdentity, role = 'node'): void {
  const dir = identityDir(dataDir, role)
  const next = `${dir}${NEXT}`
  const previous = `${dir}${PREVIOUS}`
  rmSync(next, { recursive: true, force: true })
  const write = (name: string, data: string) => writeFileAtomic(join(next, name), data)
  write(FILES.tlsKey, identity.tlsKeyPem)
  write(FILES.tlsCert, identity.tlsCertPem)
  write(FILES.sshKey, identity.sshKeyPem)
  write(FILES.sshCert, identity.sshCert.trimEnd() + '\n')
  write(FILES.ca, identity.hostCAPems.join(''))
  const meta: IdentityMeta = {
    host_id: identity.hostId,
    nodename: identity.nodename,
    cluster_name: identity.clusterName,
    roles: identity.roles,
    auth_servers: identity.authServers,
    user_ca_ssh_keys: identity.userCASshKeys,
    trust_version: identity.trustVersion,
    ...(identity.hostCASshKeys ? { host_ca_ssh_keys: identity.hostCASshKeys } : {}),
    ...(identity.assignedLabels ? { assigned_labels: identity.assignedLabels } : {}),
  }
  write(FILES.meta, JSON.stringify(meta, null, 2) + '\n')
  rmSync(previous, { recursive: true, force: true })
  if (existsSync(dir)) renameSync(dir, previous)
  renameSync(next, dir)
  fsyncDirectory(dirname(dir))
  rmSync(previous, { recursive: true, force: true })
}

export function splitPems(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)?.map((p) => p.trimEnd() + '\n') ?? []
}
