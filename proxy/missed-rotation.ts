// A proxy that missed part or all of a host CA rotation cannot reach its auth server any
// more: off through the whole rotation, it trusts only the dropped CA and cannot verify the
// server; off from its start, it trusts both CAs but holds a certificate from the dropped one,
// which the server refuses. Either way it asks for the trust bridges (shared/trust-bridge.ts),
// as nodes do, and takes a set only as checkTrust allows (signed by a host CA it trusts, for
// its cluster, newer than its own). Its certificate is then from a CA it no longer trusts and
// is recovered with its registered keys (shared/host-renewal.ts, shared/recover.ts).

import { ApiError } from '../shared/errors.ts'
import { identityDir, type NodeIdentity } from '../shared/identity-store.ts'
import type { Logger } from '../shared/log.ts'
import { caPin } from '../shared/pin.ts'
import { untrustedPeerOfError } from '../shared/tls-verdict.ts'
import type { MissedRotation, TrustBridge } from '../shared/trust-bridge.ts'
import { checkTrust, TrustRefused, type TrustStatement } from '../shared/trust-statement.ts'

/** Why a call to the auth server failed, when a missed host CA rotation may explain it. */
export function missedRotationOf(error: unknown): MissedRotation | undefined {
  // A refusal quotes the TLS verdict on this proxy's certificate too: the status tells them apart.
  if (error instanceof ApiError) return error.status === 401 ? 'refused' : undefined
  return untrustedPeerOfError(error) ? 'untrusted' : undefined
}

export interface ProxyTrustBridgeOptions {
  identity: () => NodeIdentity
  dataDir: string
  /** Takes a set checkTrust accepted: it is what the proxy trusts from then on. */
  take: (trust: TrustStatement) => void
  log: Logger
}

export class ProxyTrustBridge {
  private readonly options: ProxyTrustBridgeOptions
  private bridge?: TrustBridge

  constructor(options: ProxyTrustBridgeOptions) {
    this.options = options
  }

  /**
   * After a failed call to the auth server: when a missed rotation may explain it, asks for
   * the bridges, at most every BRIDGE_MS. True when a set was taken.
   */
  async afterFailure(error: unknown): Promise<boolean> {
    const why = missedRotationOf(error)
    if (why === undefined) return false
    // Loaded only when needed: a proxy that follows every rotation never holds this code.
    const { TrustBridge } = await import('../shared/trust-bridge.ts')
    const { identity, dataDir, log } = this.options
    this.bridge ??= new TrustBridge({
      role: 'proxy',
      identity,
      follow: (trust, server, bridge) => this.follow(trust, server, bridge),
      unbridged: (server, readmit, pins, expiredOn) => {
        const rejoin = `make a token with "${readmit}", remove ${identityDir(dataDir, 'proxy')} and start the proxy with that token`
        const fields = { proxy_id: identity().hostId, readmit, trust_unbridged: pins.join(',') }
        if (expiredOn !== undefined) {
          log.error(
            `the host CA this proxy trusts expired on ${expiredOn}, and ${server} presents another: once the cluster's host CA is rotated through to standby ("warrenctl auth rotate --type=host" on the auth server's host), this proxy follows it and recovers its certificate if that expired within the recovery window; else ${rejoin}`,
            { ...fields, trusted_ca_expired: expiredOn },
          )
        } else {
          log.error(
            `no trust bridge leads from the host CAs this proxy trusts to the one ${server} presents (the rotation was longer ago than bridges are kept, or it is not this cluster's auth server): ${rejoin}`,
            fields,
          )
        }
      },
      log,
    })
    return this.bridge.ask(identity().authServers[0]!, why)
  }

  private follow(trust: TrustStatement, server: string, bridge: boolean): boolean {
    const identity = this.options.identity()
    try {
      if (!checkTrust(trust, { ...identity, version: identity.trustVersion })) return false
    } catch (error) {
      if (!(error instanceof TrustRefused)) throw error
      this.options.log.warn(`trusted CAs from ${server} refused: ${error.message}`, { trust_refused: error.message })
      return false
    }
    this.options.take(trust)
    const fields = { host_cas: trust.host_ca_certs.length, user_cas: trust.user_ca_ssh_keys.length, trust_version: trust.version }
    if (bridge) this.options.log.info(`trusted CAs taken from a bridge from ${server}, across a host CA rotation`, { ...fields, trust_bridged: caPin(trust.host_ca_certs[0]!) })
    else this.options.log.info(`trusted CAs taken from ${server}: what the cluster trusts now`, fields)
    return true
  }
}
