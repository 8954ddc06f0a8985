// The set of CAs nodes trust, signed for them (shared/trust-statement.ts): what the auth
// server hands nodes and proxies with every answer that carries CAs; and the live proxy
// set, signed for them too (shared/signed-live-set.ts).

import { type LiveSetSignature, liveSetOrder, signLiveSet } from '../shared/signed-live-set.ts'
import { signTrust, type TrustSigner, type TrustStatement } from '../shared/trust-statement.ts'
import type { Authority } from './authorities.ts'

function signers(hostCA: Authority): TrustSigner[] {
  return hostCA.keySets.map((set) => ({ certPem: set.tlsCertPem, key: set.tlsKey }))
}

let last: { hostCA: Authority; userCA: Authority; clusterName: string; statement: TrustStatement } | undefined

/** The current set, signed with every host CA key (signed again only when a CA changed). */
export function trustStatement(clusterName: string, hostCA: Authority, userCA: Authority): TrustStatement {
  if (last?.hostCA === hostCA && last.userCA === userCA && last.clusterName === clusterName) return last.statement
  const statement = signTrust(
    {
      cluster_name: clusterName,
      // A sum, not the later of the two: a step of either CA makes it grow, whatever the
      // clocks of the auth servers that made the steps.
      version: hostCA.changedAt + userCA.changedAt,
      host_ca_certs: hostCA.tlsCertPems,
      user_ca_ssh_keys: userCA.sshPublicKeys,
    },
    signers(hostCA),
  )
  last = { hostCA, userCA, clusterName, statement }
  return statement
}

/** The time of the last live set this process signed: a clock stepped back must not make later reads look older. */
let lastSignedAt = 0

/** The live proxy set (sorted) and its signature for nodes, made for every read: its time orders it. */
export function signedLiveSet(clusterName: string, hostCA: Authority, ids: string[], now = Date.now()): { proxies: string[]; proxies_signed: LiveSetSignature } {
  const proxies = liveSetOrder(ids)
  lastSignedAt = Math.max(now, lastSignedAt + 1)
  return { proxies, proxies_signed: signLiveSet(clusterName, proxies, signers(hostCA), lastSignedAt) }
}
