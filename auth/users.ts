// People: a user has a name and the logins (OS accounts) its certificates may use. Users
// get short-lived certificates from the user CA: an OpenSSH certificate for the node's SSH
// server, and an X.509 one that the proxy checks before it opens a stream to a node.

import { type KeyObject, randomBytes } from 'node:crypto'
import type { Access } from '../shared/access.ts'
import { sshAccessExtensions, x509AccessExtension, x509GenerationExtension } from '../shared/access-cert.ts'
import { createSshCertificate } from '../shared/ssh-cert.ts'
import { createCertificate } from '../shared/x509.ts'
import type { Authority } from './authorities.ts'
import type { Backend, Condition, Operation } from './backend/backend.ts'
import { checkSshKey, checkTlsKey } from './key-policy.ts'

const PREFIX = '/users/'
const NAME = /^[a-z_][a-z0-9_.-]{0,31}$/
/** User certificates are short-lived by design; a day and a bit at most. */
export const MAX_USER_CERT_TTL_MS = 30 * 3600_000
/**
 * A user certificate's validity starts this long before it is issued, for nodes whose clock
 * runs a little behind (whole seconds: certificates carry whole seconds). A lock on the
 * certificates issued before a reset compares their start with it (revocations.ts).
 */
export const USER_CERT_BACKDATE_MS = 60_000

export interface UserRecord {
  name: string
  logins: string[]
  roles: string[]
  created: number
  /**
   * A random ID that both certificates of the user carry. `users reset` replaces it, and
   * `users rm` deletes it with the user, in the transaction that voids the user's secrets;
   * their lock names the one they ended, and refuses the certificates that carry it, by
   * what they carry rather than by dates stamped with the clock of whichever auth server
   * issued them. Absent in users added by an earlier version until their next certificate.
   */
  generation?: string
}

/** A new user generation (shared/access-cert.ts GENERATION_FORM). */
export function newGeneration(): string {
  return randomBytes(12).toString('base64url')
}

/** Tries of a change to a user record that meets another change of it before it gives up. */
const RECORD_TRIES = 5

/** The role of users added before users had roles: reach every node as their logins. */
const DEFAULT_ROLES = ['access']

export class UserError extends Error {}

/** No user of that name. */
export class UnknownUser extends UserError {}

export function validateName(kind: string, name: string): void {
  if (!NAME.test(name)) throw new UserError(`invalid ${kind} "${name}": use lowercase letters, digits, "_", "-" or ".", starting with a letter or "_", at most 32 characters`)
}

/**
 * Names the audit log gives actors that are not users (auth/audit.ts actorOf, rotation.ts):
 * a user of one of these names could not be told from them.
 */
const RESERVED_NAMES = new Set(['admin', 'automatic', 'unknown'])

export class UserDirectory {
  private readonly backend: Backend

  constructor(backend: Backend) {
    this.backend = backend
  }

  async add(
    name: string,
    logins: string[],
    roles: string[] = DEFAULT_ROLES,
    also: { conditions: Condition[]; operations: Operation[] } = { conditions: [], operations: [] },
  ): Promise<UserRecord> {
    validateName('user name', name)
    if (RESERVED_NAMES.has(name))
      throw new UserError(`the user name "${name}" is reserved: the audit log names actors that are not users so (the local admin identity, automatic steps)`)
    if (logins.length === 0) throw new UserError('a user needs at least one login, e.g. --logins=root,pi')
    for (const login of logins) validateName('login', login)
    if (roles.length === 0) throw new UserError('a user needs at least one role, e.g. --roles=access')
    for (const role of roles) validateName('role', role)
    const record: UserRecord = { name, logins: [...new Set(logins)], roles: [...new Set(roles)], created: Date.now(), generation: newGeneration() }
    const key = PREFIX + name
    // `also` (the user's invitation) is written with the user or not at all.
    if (!(await this.backend.txn([{ key, absent: true }, ...also.conditions], [{ op: 'put', key, value: JSON.stringify(record) }, ...also.operations]))) {
      if (await this.backend.get(key)) throw new UserError(`user "${name}" already exists`)
      throw new UserError(`user "${name}" could not be added: try again`)
    }
    return record
  }

  async get(name: string): Promise<UserRecord | undefined> {
    const item = await this.backend.get(PREFIX + name)
    return item ? readRecord(item.value) : undefined
  }

  /** Deletes the user, with `also` in the same transaction; throws UnknownUser when there is none. */
  async remove(name: string, also: Operation[] = []): Promise<UserRecord> {
    const item = await this.backend.get(PREFIX + name)
    if (!item) throw new UnknownUser(`no user "${name}": "warrenctl users ls" lists the users`)
    if (!(await this.backend.txn([{ key: item.key, revision: item.revision }], [{ op: 'delete', key: item.key }, ...also]))) {
      throw new UserError(`user "${name}" changed while being removed: try again`)
    }
    return readRecord(item.value)
  }

  /**
   * Gives the user a new generation, with `also` in the same transaction; returns the one it
   * replaced (undefined: the user had none yet). Throws UnknownUser when there is no user.
   */
  replaceGeneration(name: string, also: Operation[] = []): Promise<{ record: UserRecord; replaced?: string }> {
    return this.#newGeneration(name, { also, keepOne: false, during: 'being reset' })
  }

  /**
   * `user` with a generation: a user added by an earlier version gets one (stored, unless a
   * change came first: then the record as it is now). Certificates are issued only to a
   * record with one, so that a reset or removal refuses them by it.
   */
  async withGeneration(user: UserRecord): Promise<UserRecord> {
    if (user.generation) return user
    return (await this.#newGeneration(user.name, { also: [], keepOne: true, during: 'its certificates were issued' })).record
  }

  /** Writes the user's record with a new generation (unless `keepOne` and it has one), retried while the record changes. */
  async #newGeneration(name: string, options: { also: Operation[]; keepOne: boolean; during: string }): Promise<{ record: UserRecord; replaced?: string }> {
    for (let attempt = 0; attempt < RECORD_TRIES; attempt++) {
      const item = await this.backend.get(PREFIX + name)
      if (!item) throw new UnknownUser(`no user "${name}": "warrenctl users ls" lists the users`)
      const current = readRecord(item.value)
      if (options.keepOne && current.generation) return { record: current, replaced: current.generation }
      const stored = JSON.stringify({ ...(JSON.parse(item.value) as UserRecord), generation: newGeneration() })
      if (await this.backend.txn([{ key: item.key, revision: item.revision }], [{ op: 'put', key: item.key, value: stored }, ...options.also])) {
        return { record: readRecord(stored), replaced: current.generation }
      }
    }
    throw new UserError(`user "${name}" kept changing while ${options.during}: try again`)
  }

  async list(): Promise<UserRecord[]> {
    return (await this.backend.list(PREFIX)).map((item) => readRecord(item.value))
  }
}

function readRecord(json: string): UserRecord {
  const record = JSON.parse(json) as UserRecord
  return { ...record, roles: record.roles ?? DEFAULT_ROLES }
}

export interface UserCertificates {
  sshCert: string
  tlsCertPem: string
  validBefore: number
}

/**
 * The SSH principal of a user whose roles allow no login (forwarded ports only): a
 * certificate without principals is good for any login on a stock sshd, and no account can
 * be named this (':' separates the fields of /etc/passwd).
 */
export const NO_LOGIN_PRINCIPAL = 'warren:no-login'

/**
 * Certificates that carry `access` (the user's roles resolved): its logins are the SSH
 * principals (NO_LOGIN_PRINCIPAL when there are none). Throws KeyPolicyError for a key type the cluster does not certify.
 */
export function issueUserCertificates(
  userCA: Authority,
  clusterName: string,
  user: UserRecord,
  keys: { ssh: KeyObject; tls: KeyObject },
  ttlMs: number,
  access: Access,
): UserCertificates {
  checkTlsKey(keys.tls)
  checkSshKey(keys.ssh)
  const now = Date.now()
  const validAfter = new Date(now - USER_CERT_BACKDATE_MS)
  const validBefore = userCA.capValidBefore(new Date(now + Math.min(ttlMs, MAX_USER_CERT_TTL_MS)), now)
  const signing = userCA.signing
  const sshCert = createSshCertificate({
    publicKey: keys.ssh,
    caKey: signing.sshKey,
    type: 'user',
    keyId: user.name,
    principals: access.logins.length > 0 ? access.logins : [NO_LOGIN_PRINCIPAL],
    validAfter,
    validBefore,
    extensions: sshAccessExtensions(access, user.generation),
  })
  const tlsCertPem = createCertificate({
    subject: { CN: user.name, O: clusterName, OU: ['user'] },
    issuer: { CN: `${clusterName} user CA`, O: clusterName },
    publicKey: keys.tls,
    signingKey: signing.tlsKey,
    notBefore: validAfter,
    notAfter: validBefore,
    extKeyUsage: ['clientAuth'],
    extensions: [x509AccessExtension(access), ...(user.generation ? [x509GenerationExtension(user.generation)] : [])],
  })
  return { sshCert, tlsCertPem, validBefore: validBefore.getTime() }
}
