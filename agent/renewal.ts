// How a node renews its certificates (when, and recovery once they expired, is every
// host's rule: shared/host-renewal.ts): always with its current identity, never a token,
// through a tunnel's control stream in tunnel mode and from the auth server itself in
// direct mode. Failures are retried with backoff.

import { HostRenewal } from '../shared/host-renewal.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import type { Logger } from '../shared/log.ts'
import type { RenewedCertificates } from '../shared/protocol/hosts.ts'
import type { RenewalState } from '../shared/renewal-schedule.ts'
import { CertificatesRefused, SshCertificateRefused } from '../shared/renewed-certificates.ts'
import type { AgentTunnel, TrustMessage } from './tunnel.ts'

/** A renewal asked for through a tunnel and not answered within this has failed (the proxy may have gone). */
const TUNNEL_ANSWER_MS = 30_000

export interface NodeRenewalOptions {
  identity: () => NodeIdentity
  /** Where the node joined: a proxy's web port (tunnel mode) or an auth server (direct mode). */
  server: string
  /** A tunnel to renew through; undefined in direct mode. */
  tunnel: () => AgentTunnel | undefined
  /** Whether the node is in tunnel mode (it renews only through its tunnels then). */
  tunnelMode: () => boolean
  /** The certificate can no longer be used (it expired, or its CA was dropped): recovery follows. */
  unusable: () => void
  /** Puts new certificates in place everywhere the node uses them. */
  apply: (renewed: RenewedCertificates, how: 'renewed' | 'recovered') => void
  log: Logger
}

interface Pending {
  tunnel: AgentTunnel
  resolve: (renewed: RenewedCertificates) => void
  reject: (error: Error) => void
}

export class NodeRenewal {
  private readonly options: NodeRenewalOptions
  private readonly renewal: HostRenewal
  private pending?: Pending

  constructor(options: NodeRenewalOptions) {
    this.options = options
    this.renewal = new HostRenewal({
      what: "this node's certificates",
      identity: options.identity,
      renew: (identity) => (options.tunnelMode() ? this.throughTunnel() : this.direct(identity)),
      apply: options.apply,
      // The agent's apply judges the certificates (acceptRenewed), counting a refused set of CAs as it does.
      applyChecks: true,
      unusable: options.unusable,
      log: options.log,
    })
  }

  start(): void {
    this.renewal.start()
  }

  get state(): RenewalState {
    return this.renewal.state
  }

  /** Epoch ms by the clock the certificate is judged by (HostRenewal.now): the auth server's, once it found this one ahead. */
  now(): number {
    return this.renewal.now()
  }

  /** How far this node's clock was found ahead of the auth server's. */
  get clockAheadMs(): number {
    return this.renewal.clockAheadMs
  }

  /** The trusted CAs changed: renews if the CA that signs now did not issue the certificate, at once or within `spreadMs`. */
  trustChanged(spreadMs = 0): void {
    this.renewal.trustChanged(spreadMs)
  }

  /** The system clock was set (by `byMs`): the renewal is timed again by the clock as it reads now. */
  clockStepped(byMs: number): void {
    this.renewal.clockStepped(byMs)
  }

  /** A tunnel's control stream answered a renewal: 'certs' or 'renew_failed'. */
  answered(tunnel: AgentTunnel, message: Extract<TrustMessage, { type: 'certs' | 'renew_failed' }>): void {
    const pending = this.pending
    if (message.type === 'certs') {
      const { type: _, ...renewed } = message
      if (pending?.tunnel === tunnel) {
        pending.resolve(renewed)
        return
      }
      // Unasked (another version of the proxy): taken all the same if it is for our keys.
      try {
        this.options.apply(renewed, 'renewed')
      } catch (error) {
        const reason = (error as Error).message
        const refused =
          error instanceof CertificatesRefused ? { certificates_refused: reason, ...(error instanceof SshCertificateRefused ? { ssh_cert_refused: reason } : {}) } : {}
        this.options.log.warn(`certificates from proxy ${tunnel.proxyId} refused: ${reason}`, { proxy_id: tunnel.proxyId, ...refused })
      }
    } else if (pending?.tunnel === tunnel) {
      pending.reject(new Error(message.error))
    }
  }

  stop(): void {
    this.renewal.stop()
    this.pending?.reject(new Error('the node is stopping'))
  }

  /** Asks the proxy at the end of a tunnel, which asks the auth server for the key the tunnel proved. */
  private throughTunnel(): Promise<RenewedCertificates> {
    const tunnel = this.options.tunnel()
    if (!tunnel) return Promise.reject(new Error('no tunnel is open to renew through'))
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer)
        tunnel.off('close', closed)
        this.pending = undefined
      }
      const closed = () => pending.reject(new Error('the tunnel closed before the answer came'))
      const pending: Pending = {
        tunnel,
        resolve: (renewed) => {
          done()
          resolve(renewed)
        },
        reject: (error) => {
          done()
          reject(error)
        },
      }
      const timer = setTimeout(() => pending.reject(new Error(`no answer through the tunnel within ${TUNNEL_ANSWER_MS / 1000}s`)), TUNNEL_ANSWER_MS)
      tunnel.once('close', closed)
      this.pending = pending
      tunnel.requestRenewal()
    })
  }

  /** Direct mode: the auth server renews for the certificate this connection presents. */
  private async direct(identity: NodeIdentity): Promise<RenewedCertificates> {
    const { ApiClient } = await import('../shared/api-client.ts')
    const client = new ApiClient({ server: this.options.server, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
    try {
      return await client.call('POST /v1/renew')
    } finally {
      await client.close()
    }
  }
}
