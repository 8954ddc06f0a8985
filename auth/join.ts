// The join endpoint's logic: check the token for the requested roles, check that the
// caller holds the private keys it asks to have certified, sign them, and register a new
// host under an ID this server chooses — consuming a single-use token, spending the
// challenge nonce and claiming the node name in the same atomic transaction, so that of
// two racing joins exactly one wins and a refused join leaves no trace of a node.
//
// A join always creates a new host. A host that has an identity renews it with its
// current certificate (renew.ts); it never joins again under the same ID.

import { createPublicKey, randomUUID, X509Certificate, type KeyObject } from 'node:crypto'
import type { Backend } from './backend/backend.ts'
import type { Authority } from './authorities.ts'
import { reservedName } from './certificate-names.ts'
import { HOST_CERT_TTL_MS, issueHostIdentity, validity } from './issuer.ts'
import { ChallengeRefusal, usedNonceKey, type JoinChallenges } from './join-challenge.ts'
import { checkSshKey, checkTlsKey, KeyPolicyError, publicKeyFingerprint } from './key-policy.ts'
import { NodenameTaken, type NodeDirectory } from './nodes.ts'
import { isTokenRole, type TokenRole } from './roles.ts'
import { TokenRefusal, TOKEN_NOT_FOUND, type TokenService } from './tokens.ts'
import { HttpError, labelsField, stringField, stringListField } from '../shared/json-http.ts'
import { joinProofMessage, verifyProof } from '../shared/join-proof.ts'
import { parseSshPublicKey, sshPublicKeyLine } from '../shared/ssh-cert.ts'
import type { Joined as JoinResponse } from '../shared/protocol/hosts.ts'

const NODENAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$/
/** A host ID's shape: a node named like one could be mistaken for that host when routed to. */
const HOST_ID_LIKE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** What is wrong with `nodename` as a node's name (for a 400 naming `field`), or undefined. */
export function nodenameProblem(nodename: string, field = 'nodename'): string | undefined {
  if (!NODENAME.test(nodename)) return `field "${field}" must be a host name (letters, digits, ".", "_", "-")`
  if (reservedName(nodename)) return `field "${field}": "${nodename}" is a reserved name`
  if (HOST_ID_LIKE.test(nodename)) return `field "${field}" must not look like a host ID`
  return undefined
}

/** Fields older clients sent that a caller may no longer choose. */
const REFUSED_FIELDS: Record<string, string> = {
  host_id: 'the auth server assigns host IDs; a host that has one renews with its certificate instead of joining',
  addresses: 'certificates name only the host ID and the node name (a proxy\'s public addresses come from proxy_service.public_addr)',
}

const NONCE_USED = 'the join challenge was already used: ask for a new one'

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

function publicKeyField(body: Record<string, unknown>, field: string, parse: (text: string) => KeyObject, check: (key: KeyObject) => void, expected: string): KeyObject {
  let key: KeyObject
  try {
    key = parse(stringField(body, field, { max: 4096 }) as string)
  } catch (error) {
    if (error instanceof HttpError) throw error
    throw new HttpError(400, `field "${field}" must be ${expected}`)
  }
  try {
    check(key)
  } catch (error) {
    if (error instanceof KeyPolicyError) throw new HttpError(400, `field "${field}": ${error.message}`)
    throw error
  }
  return key
}

/** Validates the request body; every problem is a 400 naming the field. */
export function parseJoinRequest(body: Record<string, unknown>): JoinRequest {
  for (const [field, reason] of Object.entries(REFUSED_FIELDS)) {
    if (field in body) throw new HttpError(400, `field "${field}" is not accepted: ${reason}`)
  }
  const token = stringField(body, 'token', { max: 512 }) as string
  const nodename = stringField(body, 'nodename', { max: 253 }) as string
  const problem = nodenameProblem(nodename)
  if (problem) throw new HttpError(400, problem)
  const roles = stringListField(body, 'roles', 8)
  if (roles.length === 0) throw new HttpError(400, 'field "roles" must name at least one role')
  for (const role of roles) if (!isTokenRole(role)) throw new HttpError(400, `unknown role "${role}"`)
  const tlsPublicKey = publicKeyField(body, 'tls_public_key', (text) => createPublicKey(text), checkTlsKey, 'a PEM public key')
  const sshPublicKey = publicKeyField(body, 'ssh_public_key', parseSshPublicKey, checkSshKey, 'an ssh-ed25519 public key line')
  const publicAddrs = stringListField(body, 'public_addrs', 16)
  if (publicAddrs.length > 0 && !roles.includes('proxy')) throw new HttpError(400, 'field "public_addrs" is only for proxies')
  labelsField(body, 'labels')
  const nonce = stringField(body, 'nonce', { max: 256 }) as string
  const tlsSignature = stringField(body, 'tls_signature', { max: 2048 }) as string
  const sshSignature = stringField(body, 'ssh_signature', { max: 2048 }) as string
  return { token, nodename, roles: roles as TokenRole[], tlsPublicKey, sshPublicKey, publicAddrs, nonce, tlsSignature, sshSignature }
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
}

/** The caller must hold both private keys: each signed this cluster's nonce and both public keys. */
function checkProofOfPossession(context: JoinContext, request: JoinRequest): void {
  const message = joinProofMessage({ clusterName: context.clusterName, nonce: request.nonce, tlsPublicKey: request.tlsPublicKey, sshPublicKey: request.sshPublicKey })
  if (!verifyProof(message, request.tlsPublicKey, request.tlsSignature)) throw new HttpError(403, 'field "tls_signature" is not a signature by the key in "tls_public_key": the joining device must hold its private key')
  if (!verifyProof(message, request.sshPublicKey, request.sshSignature)) throw new HttpError(403, 'field "ssh_signature" is not a signature by the key in "ssh_public_key": the joining device must hold its private key')
}

/**
 * Throws TokenRefusal, NodenameTaken or HttpError (all safe to show) when this join is not
 * admitted. Nothing is written before every check has passed.
 */
export async function join(context: JoinContext, request: JoinRequest): Promise<JoinResponse & { replaced?: string }> {
  let spend
  try {
    spend = context.challenges.spend(request.nonce)
  } catch (error) {
    if (error instanceof ChallengeRefusal) throw new HttpError(403, error.message)
    throw error
  }
  checkProofOfPossession(context, request)
  // Also a condition of the transaction below; read here so that a replay is told so first.
  if (await context.backend.get(usedNonceKey(request.nonce))) throw new HttpError(403, NONCE_USED)
  const valid = await context.tokens.validate(request.token, request.roles, request.nodename)
  const hostId = randomUUID()
  const joinedAt = Date.now()
  const ttlMs = context.hostCertTtlMs ?? HOST_CERT_TTL_MS
  const record = {
    hostId,
    nodename: request.nodename,
    roles: request.roles,
    joinedAt,
    certExpires: validity(joinedAt, ttlMs).notAfter.getTime(),
    sshPublicKey: sshPublicKeyLine(request.sshPublicKey),
    tlsKeySha256: publicKeyFingerprint(request.tlsPublicKey),
    ...(request.publicAddrs.length > 0 ? { publicAddrs: request.publicAddrs } : {}),
  }
  const registration = await context.nodes.planRegistration(record, { replaceHolder: valid.record.nodename !== undefined })
  const identity = issueHostIdentity(context.hostCA, { ...record, clusterName: context.clusterName, tlsPublicKey: request.tlsPublicKey, sshPublicKey: request.sshPublicKey, ttlMs, nowMs: joinedAt })
  const applied = await context.backend.txn(
    [...valid.consume.conditions, ...spend.conditions, ...registration.conditions],
    [...valid.consume.operations, ...spend.operations, ...registration.operations],
  )
  if (!applied) await explainConflict(context, request)
  if (registration.replaces) context.nodes.forget(registration.replaces)
  return {
    host_id: hostId,
    cluster_name: context.clusterName,
    tls_cert: identity.tlsCertPem,
    ssh_cert: identity.sshCert,
    host_ca_certs: context.hostCA.tlsCertPems,
    user_ca_ssh_keys: context.userCA.sshPublicKeys,
    ...(registration.replaces ? { replaced: registration.replaces } : {}),
  }
}

/** The transaction's conditions failed: another join got there first. Says which race was lost. */
async function explainConflict(context: JoinContext, request: JoinRequest): Promise<never> {
  if (await context.backend.get(usedNonceKey(request.nonce))) throw new HttpError(403, NONCE_USED)
  if (request.roles.includes('node') && (await context.nodes.holderOf(request.nodename))) throw new NodenameTaken(request.nodename)
  // Otherwise a single-use token that another join consumed first.
  throw new TokenRefusal(TOKEN_NOT_FOUND)
}
