// The keys a person's login or sign-up asks the user CA to certify, taken only with proof
// that the caller holds them: each key's signature over a fresh challenge of this cluster
// and both public keys (shared/join-proof.ts, under LOGIN_PURPOSE), as a joining device
// proves its own. Without it a user could have certificates made in their name for keys
// that are someone else's. The challenge is spent before the password is looked at, so a
// request recorded on the way and sent again changes nothing.

import type { KeyObject } from 'node:crypto'
import { joinProofMessage, LOGIN_PURPOSE, verifyProof } from '../shared/join-proof.ts'
import { ProtocolError } from '../shared/protocol/errors.ts'
import type { LoginKeyFields } from '../shared/protocol/logins.ts'
import { publicKeys } from './api/admin-users.ts'
import type { Backend } from './backend/backend.ts'
import { ChallengeRefusal, type JoinChallenges } from './join-challenge.ts'

/**
 * The request's keys once both signatures check out, its challenge spent; throws
 * ProtocolError (400) for a key or signature that does not, ChallengeRefusal (403) for a
 * challenge this cluster did not issue, that expired or that was used before.
 */
export async function provenLoginKeys(
  route: string,
  body: LoginKeyFields,
  context: { clusterName: string; challenges: JoinChallenges; backend: Backend },
): Promise<{ ssh: KeyObject; tls: KeyObject }> {
  const keys = publicKeys(route, body)
  const spending = context.challenges.spend(body.nonce)
  const message = joinProofMessage({ purpose: LOGIN_PURPOSE, clusterName: context.clusterName, nonce: body.nonce, tlsPublicKey: keys.tls, sshPublicKey: keys.ssh })
  if (!verifyProof(message, keys.tls, body.tls_signature))
    throw new ProtocolError(route, 'tls_signature', 'field "tls_signature" is not a signature by the key in "tls_public_key" over this challenge')
  if (!verifyProof(message, keys.ssh, body.ssh_signature))
    throw new ProtocolError(route, 'ssh_signature', 'field "ssh_signature" is not a signature by the key in "ssh_public_key" over this challenge')
  if (!(await context.backend.txn(spending.conditions, spending.operations))) throw new ChallengeRefusal('the challenge was already used: ask for a new one')
  return keys
}
