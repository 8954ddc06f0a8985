// The public routes: health, the cluster's CA, and what a device without a valid
// certificate can do: join with a token, or recover its expired certificates with its keys.
// Both are anonymous, so every refusal is charged to the caller's address
// (rate-limit.ts): a try is taken before the body (and the token in it) is read, and given
// back only when the request succeeds, so requests in flight from one address share it.

import { HttpError, NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import { certSubject } from '../../shared/cert-subject.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { JOIN_SECRETS, type JoinBody, joinSealPurpose } from '../../shared/protocol/hosts.ts'
import { parseWith } from '../../shared/protocol/shape.ts'
import { join, parseJoinRequest } from '../join.ts'
import { TooManyAttempts } from '../rate-limit.ts'
import { parseRecoveryRequest } from '../recovery.ts'
import { clientAddress } from './access.ts'
import type { AuthContext, AuthRoutes } from './context.ts'
import { statusOf } from './errors.ts'
import { assignedLabelsOf, trustedCAs } from './hosts.ts'

/** Takes a try from `address`, or refuses the request before its body is read. Joins, recoveries, logins and sign-ups share the address's tries. */
export function reserveTry(context: AuthContext, address: string, what: string, attempts = 'join'): void {
  const wait = context.limiter.reserve(address)
  if (wait === 0) return
  context.log.warn(`${what} refused: too many attempts`, { from: address })
  throw new TooManyAttempts(address, wait, attempts)
}

/** A refusal told with what it refused (logged, and the caller's answer); a failure as it is. */
export function described(context: AuthContext, error: unknown, what: string, address: string, fields: Record<string, string> = {}): unknown {
  const refusal = statusOf(error)
  if (!refusal) return error
  const message = `${what}: ${(error as Error).message}`
  context.log.warn(message, { from: address, ...fields })
  return new HttpError(refusal.status, message, refusal.headers)
}

/** A join's token: opened from its sealed box, or as clients of earlier versions send it. */
function joinToken(context: AuthContext, body: JoinBody): string {
  if (body.sealed) {
    const opened = context.sealing.open('POST /v1/join', joinSealPurpose(context.clusterName, body), body.sealed)
    return parseWith('join', JOIN_SECRETS, opened.value, 'the sealed join: ').token
  }
  if (body.token !== undefined) return body.token
  throw new ProtocolError('POST /v1/join', 'token', 'field "token" or "sealed" is required')
}

export const joinRoutes = {
  'GET /v1/health': { access: 'public', bodyLimit: NO_BODY, handle: async () => ({ ok: true }) },

  'GET /v1/ca': {
    access: 'public',
    bodyLimit: NO_BODY,
    handle: async (_call, context) => ({ cluster_name: context.clusterName, host_ca_certs: context.hostCA().tlsCertPems, user_ca_certs: context.userCA().tlsCertPems }),
  },

  // The nonce a joining or recovering device signs with its keys (join-challenge.ts).
  'POST /v1/join/challenge': {
    access: 'public',
    bodyLimit: NO_BODY,
    // With the key people's logins are sealed for, signed by the host CA keys, as a login comes for both.
    handle: async (_call, context) => {
      const signers = context.hostCA().keySets.map((set) => ({ certPem: set.tlsCertPem, key: set.tlsKey }))
      return { ...context.challenges.issue(), sealing_key: context.sealing.statement(context.clusterName, signers) }
    },
  },

  'POST /v1/join': {
    access: 'public',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      context.counts.joinAttempts++
      const address = clientAddress(call.req, call.peer)
      reserveTry(context, address, 'join')
      let nodename = '?'
      let roles = '?'
      try {
        const body = await call.body()
        const request = parseJoinRequest(body, joinToken(context, body))
        nodename = request.nodename
        roles = request.roles.join(',')
        const { backend, tokens, nodes, challenges, clusterName } = context
        const { replaced, repeated, ...joined } = await join(
          {
            backend,
            tokens,
            nodes,
            challenges,
            clusterName,
            hostCA: context.hostCA(),
            userCA: context.userCA(),
            hostCertTtlMs: context.settings.hostCertTtlMs,
            removal: (replaced, replacedBy) => context.revocations.removalOperation(replaced, undefined, replacedBy),
            refusedHost: (hostId) => context.revocations.refusedHost(hostId),
            assignLabels: (hostId, labels, replaced) => context.assignedLabels.joinOperations(hostId, labels, replaced),
          },
          request,
        )
        await context.assignedLabels.refresh()
        // A repeat answers, with new certificates, a join whose answer was lost (join-repeat.ts).
        // Its try is kept, as a recovery's: a device repeats a join once or twice, and the tries
        // bound how often anyone holding its keys and token can have certificates made.
        if (!repeated) context.limiter.refund(address)
        const again = repeated ? { repeated: true } : {}
        context.log.info('node joined', { nodename, host_id: joined.host_id, roles, from: address, ...(replaced ? { replaced } : {}), ...again })
        await context.audit.record('join', { accepted: true, node: nodename, host_id: joined.host_id, roles, client_addr: address, ...again })
        await context.audit.certIssued('host', joined.ssh_cert, { node: nodename, host_id: joined.host_id })
        return { ...joined, ...assignedLabelsOf(context, joined.host_id) }
      } catch (error) {
        const refusal = described(context, error, `join refused for node "${nodename}" (role ${roles})`, address)
        await context.audit.record('join', { accepted: false, node: nodename, roles, client_addr: address, reason: (refusal as Error).message })
        throw refusal
      }
    },
  },

  // A host whose certificate expired proves it holds its registered keys (recovery.ts). It
  // comes straight here, or through a proxy's web API (a tunnel cannot open with an expired
  // certificate).
  'POST /v1/recover': {
    access: 'public',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const address = clientAddress(call.req, call.peer)
      reserveTry(context, address, 'recovery')
      let host = '?'
      try {
        const request = parseRecoveryRequest(await call.body())
        host = certSubject(request.cert).commonName
        // Kept, unlike a join's: a host recovers once after a long absence, and the tries
        // bound how often anyone holding its keys can have certificates made.
        const recovered = await context.recoveries.recover(request)
        context.log.info('host certificates recovered', { host_id: host, from: address, issued: recovered.issued })
        if (recovered.issued) await context.audit.certIssued('host', recovered.sshCert, { host_id: host, client_addr: address })
        return { tls_cert: recovered.tlsCertPem, ssh_cert: recovered.sshCert, ...trustedCAs(context), ...assignedLabelsOf(context, host) }
      } catch (error) {
        throw described(context, error, `recovery refused for host ${host}`, address)
      }
    },
  },
} satisfies Partial<AuthRoutes>
