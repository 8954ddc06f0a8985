// The set of CAs nodes trust (the host CAs' certificates and SSH keys, the user CA's SSH
// keys), signed for them (shared/trust-statement.ts): what the auth server hands nodes and
// proxies with every answer that carries CAs; the bridges that lead nodes which were away
// through a host CA rotation to the new set; and the live proxy set, signed for them too
// (shared/signed-live-set.ts).

import { caPin } from '../shared/pin.ts'
import { MAX_BRIDGES } from '../shared/protocol/bridges.ts'
import { type LiveSetSignature, liveSetOrder, signLiveSet } from '../shared/signed-live-set.ts'
import { signTrust, type TrustSigner, type TrustStatement } from '../shared/trust-statement.ts'
import type { Authority } from './authorities.ts'
import type { Backend } from './backend/backend.ts'

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
      host_ca_ssh_keys: hostCA.sshPublicKeys,
    },
    signers(hostCA),
  )
  last = { hostCA, userCA, clusterName, statement }
  return statement
}

/** Where the bridge out of a dropped host CA is kept, by that CA's pin. */
export const bridgeKey = (droppedPin: string): string => `/authorities/host-bridges/${droppedPin}`

/**
 * The bridge out of the host CA that `hostBefore` (just before `standby`: the new key set
 * first, the old one after it) is about to drop: the set nodes trusted at that moment,
 * signed with both key sets. A node that still trusts only the old CA takes it by the old
 * signature, and then trusts the new CA its servers present.
 */
export function hostBridge(clusterName: string, hostBefore: Authority, userCA: Authority): TrustStatement {
  return signTrust(
    {
      cluster_name: clusterName,
      version: hostBefore.changedAt + userCA.changedAt,
      host_ca_certs: hostBefore.tlsCertPems,
      user_ca_ssh_keys: userCA.sshPublicKeys,
      host_ca_ssh_keys: hostBefore.sshPublicKeys,
    },
    signers(hostBefore),
  )
}

/** The chain of bridges out of the host CA `pin`, oldest first: each leads to the CA whose bridge follows (a rotation after a rotation). */
export async function readBridges(backend: Backend, pin: string): Promise<TrustStatement[]> {
  const chain: TrustStatement[] = []
  const seen = new Set<string>()
  for (let next = pin; chain.length < MAX_BRIDGES && !seen.has(next); ) {
    seen.add(next)
    const item = await backend.get(bridgeKey(next))
    if (!item) break
    const bridge = JSON.parse(item.value) as TrustStatement
    chain.push(bridge)
    next = caPin(bridge.host_ca_certs[0])
  }
  return chain
}

/** The time of the last live set this process signed: a clock stepped back must not make later reads look older. */
let lastSignedAt = 0

/** The live proxy set (sorted) and its signature for nodes, made for every read: its time orders it. */
export function signedLiveSet(clusterName: string, hostCA: Authority, ids: string[], now = Date.now()): { proxies: string[]; proxies_signed: LiveSetSignature } {
  const proxies = liveSetOrder(ids)
  lastSignedAt = Math.max(now, lastSignedAt + 1)
  return { proxies, proxies_signed: signLiveSet(clusterName, proxies, signers(hostCA), lastSignedAt) }
}
