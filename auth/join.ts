// The join endpoint's logic: check the token for the requested roles, sign the presented
// public keys, and register the node — consuming a single-use token in the same atomic
// transaction, so that of two racing joins exactly one wins and a refused join leaves no
// trace of a node.

import { createPublicKey, type KeyObject } from 'node:crypto'
import type { Backend } from './backend/backend.ts'
import type { Authority } from './authorities.ts'
import { issueHostIdentity } from './issuer.ts'
import { registerNodeOperation } from './nodes.ts'
import { isTokenRole, type TokenRole } from './roles.ts'
import { TokenRefusal, TOKEN_NOT_FOUND, type TokenService } from './tokens.ts'
import { HttpError, labelsField, stringField, stringListField } from '../shared/json-http.ts'
import { parseSshPublicKey, sshPublicKeyLine } from '../shared/ssh-cert.ts'
import type { JoinResponse } from '../shared/join.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const NODENAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$/

export interface JoinRequest {
  token: string
  hostId: string
  nodename: string
  roles: TokenRole[]
  tlsPublicKey: KeyObject
  sshPublicKey: KeyObject
  addresses: string[]
}

/** Validates the request body; every problem is a 400 naming the field. */
export function parseJoinRequest(body: Record<string, unknown>): JoinRequest {
  const token = stringField(body, 'token', { max: 512 }) as string
  const hostId = stringField(body, 'host_id') as string
  if (!UUID.test(hostId)) throw new HttpError(400, 'field "host_id" must be a lowercase UUID')
  const nodename = stringField(body, 'nodename', { max: 253 }) as string
  if (!NODENAME.test(nodename)) throw new HttpError(400, 'field "nodename" must be a host name (letters, digits, ".", "_", "-")')
  const roles = stringListField(body, 'roles', 8)
  if (roles.length === 0) throw new HttpError(400, 'field "roles" must name at least one role')
  for (const role of roles) if (!isTokenRole(role)) throw new HttpError(400, `unknown role "${role}"`)
  let tlsPublicKey: KeyObject
  try {
    tlsPublicKey = createPublicKey(stringField(body, 'tls_public_key') as string)
  } catch {
    throw new HttpError(400, 'field "tls_public_key" must be a PEM public key')
  }
  const type = tlsPublicKey.asymmetricKeyType
  if (type !== 'ec' && type !== 'ed25519' && !(type === 'rsa' && (tlsPublicKey.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048)) {
    throw new HttpError(400, 'field "tls_public_key" must be an ECDSA, Ed25519 or RSA (≥ 2048 bits) public key')
  }
  let sshPublicKey: KeyObject
  try {
    sshPublicKey = parseSshPublicKey(stringField(body, 'ssh_public_key') as string)
  } catch {
    throw new HttpError(400, 'field "ssh_public_key" must be an ssh-ed25519 public key line')
  }
  const addresses = stringListField(body, 'addresses', 16)
  labelsField(body, 'labels')
  return { token, hostId, nodename, roles: roles as TokenRole[], tlsPublicKey, sshPublicKey, addresses }
}

export interface JoinContext {
  backend: Backend
  tokens: TokenService
  hostCA: Authority
  userCA: Authority
  clusterName: string
}

/** Throws TokenRefusal (safe to show) when the token does not admit this join. */
export async function join(context: JoinContext, request: JoinRequest): Promise<JoinResponse> {
  const valid = await context.tokens.validate(request.token, request.roles)
  const identity = issueHostIdentity(context.hostCA, {
    hostId: request.hostId,
    nodename: request.nodename,
    clusterName: context.clusterName,
    roles: request.roles,
    tlsPublicKey: request.tlsPublicKey,
    sshPublicKey: request.sshPublicKey,
    addresses: request.addresses,
  })
  const register = registerNodeOperation({
    hostId: request.hostId,
    nodename: request.nodename,
    roles: request.roles,
    joinedAt: Date.now(),
    sshPublicKey: sshPublicKeyLine(request.sshPublicKey),
  })
  const applied = await context.backend.txn(valid.consume.conditions, [...valid.consume.operations, register])
  // Only a single-use token that another join consumed first can make this fail.
  if (!applied) throw new TokenRefusal(TOKEN_NOT_FOUND)
  return {
    host_id: request.hostId,
    cluster_name: context.clusterName,
    tls_cert: identity.tlsCertPem,
    ssh_cert: identity.sshCert,
    host_ca_certs: context.hostCA.tlsCertPems,
    user_ca_ssh_keys: context.userCA.sshPublicKeys,
  }
}
