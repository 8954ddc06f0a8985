// A user's short-lived certificates and everything a client needs with them: the answer of
// `warrenctl auth sign` (an admin asks for a user) and of a user's own login alike, so that
// both go through the same checks (a locked user gets nothing) and issue the same thing.
// What the user's roles allow is resolved here, at each issue, and carried inside both
// certificates; their lifetime is capped by the roles' smallest max_session_ttl.

import type { KeyObject } from 'node:crypto'
import { frozenAnswer } from '../shared/api-router.ts'
import { signCurrentTrust } from '../shared/current-trust.ts'
import type { UserCerts } from '../shared/protocol/admin.ts'
import type { KnownHosts } from '../shared/protocol/logins.ts'
import { KNOWN_HOSTS_RESIGN_MS, signKnownHosts } from '../shared/signed-known-hosts.ts'
import type { AuthContext } from './api/context.ts'
import type { Authority } from './authorities.ts'
import { Locked, lockReason } from './locks.ts'
import type { NodeRecord } from './nodes.ts'
import { trustStatement } from './trust.ts'
import { issueUserCertificates, type UserRecord } from './users.ts'

export async function userCertificatesFor(context: AuthContext, record: UserRecord, keys: { ssh: KeyObject; tls: KeyObject }, ttlMs: number): Promise<UserCerts> {
  // Both certificates carry the user's generation, by which a reset or removal refuses them.
  const user = await context.users.withGeneration(record)
  // The list in memory follows the backend every 500 ms; a lock made through another auth
  // server sharing it bars new certificates from the moment that server answered.
  const lock = context.revocations.list.refusedUser(user.name) ?? (await context.locks.onWholeUser(user.name).then((found) => found && lockReason(found)))
  if (lock) throw new Locked(lock)
  const { access, maxSessionTtlMs } = await context.roles.accessOf(user)
  const certs = issueUserCertificates(context.userCA(), context.clusterName, user, keys, Math.min(ttlMs, maxSessionTtlMs), access)
  context.log.info('user certificates issued', { user: user.name, valid_before: new Date(certs.validBefore).toISOString() })
  await context.audit.certIssued('user', certs.sshCert, { user: user.name })
  const trust = trustStatement(context.clusterName, context.hostCA(), context.userCA())
  const signers = context.hostCA().keySets.map((set) => ({ certPem: set.tlsCertPem, key: set.tlsKey }))
  return {
    ssh_cert: certs.sshCert,
    tls_cert: certs.tlsCertPem,
    valid_before: certs.validBefore,
    logins: access.logins,
    roles: user.roles,
    cluster_name: context.clusterName,
    host_ca_certs: context.hostCA().tlsCertPems,
    trust,
    trust_current: signCurrentTrust(context.clusterName, trust.version, keys, signers),
    proxies: (await context.nodes.proxies()).map((p) => p.webAddr).filter(Boolean),
    ...(await signedKnownHosts(context)),
  }
}

/**
 * The answer last signed, by node directory: signed again only when the registry (the list
 * registered() answers is the same array while it has not changed) or the host CA changed,
 * or after KNOWN_HOSTS_RESIGN_MS, so that a proxy asking before each `warren proxy ssh`
 * costs a lookup, not a listing and a signature, and the same bytes are answered meanwhile.
 */
const signedAnswers = new WeakMap<AuthContext['nodes'], { registered: NodeRecord[]; authority: Authority; signedAt: number; answer: KnownHosts }>()

/** The known_hosts lines and the host CAs' signatures over them, for clients that get them through a proxy. */
export async function signedKnownHosts(context: AuthContext): Promise<KnownHosts> {
  const registered = await context.nodes.registered()
  const authority = context.hostCA()
  const held = signedAnswers.get(context.nodes)
  const now = Date.now()
  // Judged by the wall clock both ways, as clients judge the signature's time: a clock set
  // back (a signature from its future) or forward signs again at once.
  const fresh = (signedAt: number) => now >= signedAt && now - signedAt < KNOWN_HOSTS_RESIGN_MS
  if (held && held.registered === registered && held.authority === authority && fresh(held.signedAt)) return held.answer
  const lines = knownHostLines(registered, context.clusterName)
  const signers = authority.keySets.map((set) => ({ certPem: set.tlsCertPem, key: set.tlsKey }))
  const answer = frozenAnswer({ known_hosts: lines, known_hosts_signatures: signKnownHosts(context.clusterName, lines, signers, now) })
  signedAnswers.set(context.nodes, { registered, authority, signedAt: now, answer })
  return answer
}

/** The registered nodes' SSH host keys, as known_hosts lines naming each by name, host ID and host ID within the cluster. */
function knownHostLines(registered: NodeRecord[], clusterName: string): string[] {
  const nodes = registered.filter((n) => n.sshPublicKey && n.roles.includes('node'))
  return nodes.map((n) => `${n.nodename},${n.hostId},${n.hostId}.${clusterName} ${n.sshPublicKey}`)
}
