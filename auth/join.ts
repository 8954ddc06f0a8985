// The join endpoint's logic: check the token for the requested roles, check that the
// caller holds the private keys it asks to have certified, sign them, and register a new
// host under an ID this server chooses — consuming a single-use token, spending the
// challenge nonce, claiming the node name and writing the join's receipt in the same atomic
// transaction, so that of two racing joins exactly one wins and a refused join leaves no
// trace of a node.
//
// A join creates a new host. A host that has an identity renews it with its
// current certificate (renew.ts); it never joins again under the same ID, except to repeat,
// with the same keys, a join whose answer it never received (join-repeat.ts).

import { createPublicKey, type KeyObject, randomUUID } from 'node:crypto'
import { joinProofMessage, verifyProof } from '../shared/join-proof.ts'
import { nodenameProblem } from '../shared/nodename.ts'
import { ProtocolError } from '../shared/protocol/errors.ts'
import type { JoinBody, Joined } from '../shared/protocol/hosts.ts'
import { parseSshPublicKey, sshPublicKeyLine } from '../shared/ssh-cert.ts'
import type { Authority } from './authorities.ts'
import type { Backend, Condition, Operation } from './backend/backend.ts'
import { HOST_CERT_TTL_MS, type HostIdentity, issueHostIdentity, validity } from './issuer.ts'
import { type JoinChallenges, usedNonceKey } from './join-challenge.ts'
import { planRepeat, type RepeatPlan, readReceipt, writeReceipt } from './join-repeat.ts'
import { checkSshKey, checkTlsKey, KeyPolicyError, publicKeyFingerprint } from './key-policy.ts'
import { type NodeDirectory, NodenameTaken, type NodeRecord, registrationOperations } from './nodes.ts'
import { isTokenRole, type TokenRole } from './roles.ts'
import { TOKEN_NOT_FOUND, TokenRefusal, type TokenService } from './tokens.ts'
import { trustStatement } from './trust.ts'

/** A join the cluster refuses: the caller does not hold the keys it asks to have certified, or replayed a challenge. */
export class JoinRefusal extends Error {}

const NONCE_USED = 'the join challenge was already used: ask for a new one'
const ROUTE = 'POST /v1/join'

export interface JoinRequest {
  token: string
  nodename: string
  roles: TokenRole[]
  tlsPublicKey: KeyObject
  sshPublicKey: KeyObject
  /** A proxy's configured public addresses (hosts), named in its certificates. */
  publicAddrs: string[]
  nonce: string
  tlsSignature: string
  sshSignature: string
}

const invalid = (field: string, message: string) => new ProtocolError(ROUTE, field, message)

function publicKey(text: string, field: string, parse: (text: string) => KeyObject, check: (key: KeyObject) => void, expected: string): KeyObject {
  let key: KeyObject
  try {
    key = parse(text)
  } catch {
    throw invalid(field, `field "${field}" must be ${expected}`)
  }
  try {
    check(key)
  } catch (error) {
    if (error instanceof KeyPolicyError) throw invalid(field, `field "${field}": ${error.message}`)
    throw error
  }
  return key
}

/** Checks what the body's shape cannot: the node name, the roles, the keys; every problem is a ProtocolError naming the field. */
/** The request in `body`, with its token as opened from its sealed box (or sent plain). */
export function parseJoinRequest(body: JoinBody, token: string): JoinRequest {
  const problem = nodenameProblem(body.nodename)
  if (problem) throw invalid('nodename', problem)
  const roles = body.roles
  if (roles.length === 0) throw invalid('roles', 'field "roles" must name at least one role')
  for (const role of roles) if (!isTokenRole(role)) throw invalid('roles', `unknown role "${role}"`)
  // A sign-up token lets a person set a password: it makes no host.
  if (roles.includes('signup')) throw invalid('roles', 'no host joins with role "signup": sign-up tokens are for "warren login --invite"')
  const tlsPublicKey = publicKey(body.tls_public_key, 'tls_public_key', (text) => createPublicKey(text), checkTlsKey, 'a PEM public key')
  const sshPublicKey = publicKey(body.ssh_public_key, 'ssh_public_key', parseSshPublicKey, checkSshKey, 'an ssh-ed25519 public key line')
  if (body.public_addrs.length > 0 && !roles.includes('proxy')) throw invalid('public_addrs', 'field "public_addrs" is only for proxies')
  return {
    token,
    nodename: body.nodename,
    roles: roles as TokenRole[],
    tlsPublicKey,
    sshPublicKey,
    publicAddrs: body.public_addrs,
    nonce: body.nonce,
    tlsSignature: body.tls_signature,
    sshSignature: body.ssh_signature,
  }
}

export interface JoinContext {
  backend: Backend
  tokens: TokenService
  nodes: NodeDirectory
  challenges: JoinChallenges
  hostCA: Authority
  userCA: Authority
  clusterName: string
  /** `auth_service.host_cert_ttl`. */
  hostCertTtlMs?: number
  /** The removal record of a host this join replaces (revocations.ts), written in the join's transaction. */
  removal?: (replaced: NodeRecord, replacedBy: string) => Operation
  /** Why a registered host is refused now (a lock), or undefined: such a host's join is not repeated (join-repeat.ts). */
  refusedHost?: (hostId: string) => string | undefined
  /** The writes that give a new node the labels its token assigns and take those of the host it replaces away (assigned-labels.ts). */
  assignLabels?: (hostId: string, labels: Record<string, string>, replaced?: string) => Operation[]
  clock?: () => number
}

/** What a join's transaction must hold and write to spend its challenge (join-challenge.ts). */
type Spend = { conditions: Condition[]; operations: Operation[] }

/** The caller must hold both private keys: each signed this cluster's nonce and both public keys. */
function checkProofOfPossession(context: JoinContext, request: JoinRequest): void {
  const message = joinProofMessage({ clusterName: context.clusterName, nonce: request.nonce, tlsPublicKey: request.tlsPublicKey, sshPublicKey: request.sshPublicKey })
  if (!verifyProof(message, request.tlsPublicKey, request.tlsSignature))
    throw new JoinRefusal('field "tls_signature" is not a signature by the key in "tls_public_key": the joining device must hold its private key')
  if (!verifyProof(message, request.sshPublicKey, request.sshSignature))
    throw new JoinRefusal('field "ssh_signature" is not a signature by the key in "ssh_public_key": the joining device must hold its private key')
}

/** What a join answers, and what the route logs and audits besides. */
export type JoinAnswer = Joined & { replaced?: string; repeated?: boolean }

/**
 * Throws ChallengeRefusal, JoinRefusal, TokenRefusal or NodenameTaken (all safe to show)
 * when this join is not admitted. Nothing is written before every check has passed.
 */
export async function join(context: JoinContext, request: JoinRequest): Promise<JoinAnswer> {
  const spend = context.challenges.spend(request.nonce)
  checkProofOfPossession(context, request)
  // Also a condition of the transaction below; read here so that a replay is told so first.
  if (await context.backend.get(usedNonceKey(request.nonce))) throw new JoinRefusal(NONCE_USED)
  try {
    return await register(context, request, spend)
  } catch (error) {
    // The token spent or the name held: by this device's own join, perhaps, whose answer was
    // lost. Only its exact repeat is answered (join-repeat.ts); anything else is refused.
    if (!(error instanceof NodenameTaken) && !(error instanceof TokenRefusal && error.message === TOKEN_NOT_FOUND)) throw error
    const plan = await planRepeat(context, request, sshPublicKeyLine(request.sshPublicKey))
    if (!plan) throw error
    const repeated = await repeat(context, request, spend, plan)
    if (repeated) return repeated
    if (await context.backend.get(usedNonceKey(request.nonce))) throw new JoinRefusal(NONCE_USED)
    throw error
  }
}

/** Registers a new host: validate, then one transaction. */
async function register(context: JoinContext, request: JoinRequest, spend: Spend): Promise<JoinAnswer> {
  const valid = await context.tokens.validate(request.token, request.roles, request.nodename)
  const sshPublicKey = sshPublicKeyLine(request.sshPublicKey)
  const receipt = await readReceipt(context.backend, request)
  // These keys joined with this token already. With a multi-use token too, that is the same
  // join again, not a second host: the first one's certificates never reached anyone, and a
  // second registration of the same keys would leave a host nobody holds certificates for
  // (and, for a node, its name claimed, so that the device's next try is refused as taken).
  const plan = receipt.item && (await planRepeat(context, request, sshPublicKey, { read: receipt, valid }))
  if (plan) return (await repeat(context, request, spend, plan)) ?? explainConflict(context, request)
  const hostId = randomUUID()
  const joinedAt = (context.clock ?? Date.now)()
  const ttlMs = context.hostCertTtlMs ?? HOST_CERT_TTL_MS
  const record = {
    hostId,
    nodename: request.nodename,
    roles: request.roles,
    joinedAt,
    certExpires: validity(joinedAt, ttlMs, context.hostCA).notAfter.getTime(),
    sshPublicKey,
    tlsKeySha256: publicKeyFingerprint(request.tlsPublicKey),
    ...(request.publicAddrs.length > 0 ? { publicAddrs: request.publicAddrs } : {}),
  }
  const registration = await context.nodes.planRegistration(record, { replaceHolder: valid.record.nodename !== undefined, removal: context.removal })
  const identity = issueHostIdentity(context.hostCA, {
    ...record,
    clusterName: context.clusterName,
    tlsPublicKey: request.tlsPublicKey,
    sshPublicKey: request.sshPublicKey,
    ttlMs,
    nowMs: joinedAt,
  })
  const written = writeReceipt(receipt, valid, record, joinedAt)
  // A token's labels are the cluster's word on the node, in force from its first tunnel on.
  const labels = context.assignLabels?.(hostId, request.roles.includes('node') ? (valid.record.labels ?? {}) : {}, registration.replaces) ?? []
  const applied = await context.backend.txn(
    [...valid.consume.conditions, ...spend.conditions, ...registration.conditions, written.condition],
    [...valid.consume.operations, ...spend.operations, ...registration.operations, written.operation, ...labels],
  )
  if (!applied) await explainConflict(context, request)
  if (registration.replaces) context.nodes.forget(registration.replaces)
  return { ...answer(context, hostId, identity), ...(registration.replaces ? { replaced: registration.replaces } : {}) }
}

/**
 * Answers `plan`'s host as its first join would have: certificates for the same keys, issued
 * now. The registration is kept, with the new certificates' expiry. Undefined when the
 * transaction's conditions failed (the nonce, the token, the host or its receipt changed).
 */
async function repeat(context: JoinContext, request: JoinRequest, spend: Spend, plan: RepeatPlan): Promise<JoinAnswer | undefined> {
  const ttlMs = context.hostCertTtlMs ?? HOST_CERT_TTL_MS
  const identity = issueHostIdentity(context.hostCA, {
    ...plan.record,
    clusterName: context.clusterName,
    tlsPublicKey: request.tlsPublicKey,
    sshPublicKey: request.sshPublicKey,
    ttlMs,
    nowMs: (context.clock ?? Date.now)(),
  })
  const applied = await context.backend.txn(
    [...spend.conditions, ...plan.conditions],
    [...spend.operations, ...registrationOperations({ ...plan.record, certExpires: identity.expires })],
  )
  return applied ? { ...answer(context, plan.record.hostId, identity), repeated: true } : undefined
}

function answer(context: JoinContext, hostId: string, identity: HostIdentity): Joined {
  return {
    host_id: hostId,
    cluster_name: context.clusterName,
    tls_cert: identity.tlsCertPem,
    ssh_cert: identity.sshCert,
    host_ca_certs: context.hostCA.tlsCertPems,
    user_ca_ssh_keys: context.userCA.sshPublicKeys,
    trust: trustStatement(context.clusterName, context.hostCA, context.userCA),
  }
}

/** The transaction's conditions failed: another join got there first. Says which race was lost. */
async function explainConflict(context: JoinContext, request: JoinRequest): Promise<never> {
  if (await context.backend.get(usedNonceKey(request.nonce))) throw new JoinRefusal(NONCE_USED)
  if (request.roles.includes('node') && (await context.nodes.holderOf(request.nodename))) throw new NodenameTaken(request.nodename)
  // Otherwise the token: a single-use one that another join consumed first, or one removed.
  throw new TokenRefusal(TOKEN_NOT_FOUND)
}
