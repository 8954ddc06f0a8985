// The set of CAs nodes trust, signed for them (shared/trust-statement.ts): what the auth
// server hands nodes and proxies with every answer that carries CAs.

import { signTrust, type TrustStatement } from '../shared/trust-statement.ts'
import type { Authority } from './authorities.ts'

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
    hostCA.keySets.map((set) => ({ certPem: set.tlsCertPem, key: set.tlsKey })),
  )
  last = { hostCA, userCA, clusterName, statement }
  return statement
}
