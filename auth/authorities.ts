// The cluster's two certificate authorities. The host CA signs the X.509 and SSH
// identities of auth servers, proxies and nodes; the user CA signs people (and the admin
// identity of warrenctl). Each CA holds a list of key sets: the first one signs, all of
// them are trusted, which is what CA rotation needs.

import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto'
import { caPin } from '../shared/pin.ts'
import { sshPublicKeyLine } from '../shared/ssh-cert.ts'
import { createCA } from '../shared/x509.ts'
import type { Backend } from './backend/backend.ts'

export type AuthorityType = 'host' | 'user'

/**
 * Asked to sign with a CA whose certificate has expired: every peer would refuse what it
 * signed, so it signs nothing, and says how to get a CA that does.
 */
export class CAExpired extends Error {
  readonly type: AuthorityType
  constructor(type: AuthorityType, expires: number) {
    super(
      `the ${type} CA's certificate expired on ${new Date(expires).toISOString()}: it signs nothing any peer accepts; ` +
        `rotate it with "warrenctl auth rotate --type=${type}" on the auth server's host (its new CA signs from phase update_clients: ` +
        `"--manual --phase=init", then "--manual --phase=update_clients" gets there at once)`,
    )
    this.type = type
  }
}

export interface StoredKeySet {
  tlsCertPem: string
  tlsKeyPem: string
  sshPublicKey: string
  sshPrivateKeyPem: string
}

export type RotationPhase = 'standby' | 'init' | 'update_clients' | 'update_servers'

export interface Rotation {
  phase: RotationPhase
  mode: 'auto' | 'manual'
  /** Epoch ms when the current phase began. */
  phaseStarted: number
  gracePeriodMs: number
  /** The signing certificate before the rotation, to roll back to. */
  previousCertPem: string
}

export interface StoredAuthority {
  type: AuthorityType
  clusterName: string
  keySets: StoredKeySet[]
  /** Epoch ms of the last completed rotation; undefined when never rotated. */
  lastRotated?: number
  /** Epoch ms of the last change to the key sets (any rotation step, a rollback too): the version of what nodes trust (shared/trust-statement.ts). */
  changedAt?: number
  rotation?: Rotation
}

export interface KeySet {
  tlsCertPem: string
  tlsKey: KeyObject
  sshPublicKey: string
  sshKey: KeyObject
}

export class Authority {
  readonly type: AuthorityType
  readonly keySets: KeySet[]
  readonly lastRotated?: number
  readonly rotation?: Rotation
  /** When the key sets last changed (epoch ms); 0 for a CA that never changed. */
  readonly changedAt: number

  constructor(stored: StoredAuthority) {
    this.type = stored.type
    this.lastRotated = stored.lastRotated
    this.changedAt = changedAtOf(stored)
    this.rotation = stored.rotation
    this.keySets = stored.keySets.map((set) => ({
      tlsCertPem: set.tlsCertPem,
      tlsKey: createPrivateKey(set.tlsKeyPem),
      sshPublicKey: set.sshPublicKey,
      sshKey: createPrivateKey(set.sshPrivateKeyPem),
    }))
  }

  get signing(): KeySet {
    return this.keySets[0]
  }

  /** When the signing CA's certificate expires (epoch ms): nothing it signs is valid after. */
  get signingExpires(): number {
    this.#signingExpires ??= new X509Certificate(this.signing.tlsCertPem).validToDate.getTime()
    return this.#signingExpires
  }
  #signingExpires: number | undefined

  /** Whether the signing CA's certificate has expired by `now` (the caller's clock): it can sign nothing any peer accepts. */
  expired(now: number): boolean {
    return now >= this.signingExpires
  }

  /**
   * `validBefore` cut to the signing CA's expiry: a certificate that outlived its CA would be
   * refused by every peer anyway. Throws CAExpired once the CA has expired (`now` past it).
   */
  capValidBefore(validBefore: Date, now: number): Date {
    if (this.expired(now)) throw new CAExpired(this.type, this.signingExpires)
    return validBefore.getTime() <= this.signingExpires ? validBefore : new Date(this.signingExpires)
  }

  get tlsCertPems(): string[] {
    return this.keySets.map((set) => set.tlsCertPem)
  }

  get sshPublicKeys(): string[] {
    return this.keySets.map((set) => set.sshPublicKey)
  }

  get sshTrustedKeys(): KeyObject[] {
    return this.keySets.map((set) => createPublicKey(set.sshKey))
  }

  get pins(): string[] {
    return this.keySets.map((set) => caPin(set.tlsCertPem))
  }
}

/** When the CA's key sets last changed; for a CA stored before that was kept, its latest step is the best that is known. */
export function changedAtOf(stored: StoredAuthority): number {
  return stored.changedAt ?? Math.max(stored.lastRotated ?? 0, stored.rotation?.phaseStarted ?? 0)
}

/** A new key set; `validityDays` of its CA certificate as createCA's unless given (tests of expiry). */
export function newKeySet(type: AuthorityType, clusterName: string, validityDays?: number): StoredKeySet {
  const tls = createCA(`${clusterName} ${type} CA`, clusterName, validityDays)
  const ssh = generateKeyPairSync('ed25519')
  return {
    tlsCertPem: tls.certPem,
    tlsKeyPem: tls.key.export({ type: 'pkcs8', format: 'pem' }) as string,
    sshPublicKey: sshPublicKeyLine(ssh.publicKey, `${clusterName} ${type} CA`),
    sshPrivateKeyPem: ssh.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  }
}

export const authorityKey = (type: AuthorityType): string => `/authorities/${type}`
const key = authorityKey

export async function loadAuthority(backend: Backend, type: AuthorityType): Promise<{ authority: Authority; stored: StoredAuthority; revision: number }> {
  const item = await backend.get(key(type))
  if (!item) throw new Error(`the ${type} CA is missing from the backend`)
  const stored = JSON.parse(item.value) as StoredAuthority
  return { authority: new Authority(stored), stored, revision: item.revision }
}

/** Loads the CA, creating it on first start; two auth servers racing here agree on one. */
export async function loadOrCreateAuthority(backend: Backend, type: AuthorityType, clusterName: string): Promise<Authority> {
  const existing = await backend.get(key(type))
  if (existing) return new Authority(JSON.parse(existing.value) as StoredAuthority)
  const stored: StoredAuthority = { type, clusterName, keySets: [newKeySet(type, clusterName)] }
  if (await backend.create(key(type), JSON.stringify(stored))) return new Authority(stored)
  const winner = await backend.get(key(type))
  if (!winner) throw new Error(`the ${type} CA vanished while being created`)
  return new Authority(JSON.parse(winner.value) as StoredAuthority)
}
