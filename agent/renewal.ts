// How a node keeps its certificates: renewed on a timer once two thirds of their lifetime
// has passed, and at once when the host CA that signs changes, always with its current
// identity (never a token): through a tunnel's control stream in tunnel mode, from the auth
// server itself in direct mode. Certificates that expired anyway (the device was offline)
// open neither a tunnel nor the auth API, so they are recovered with the node's keys
// through where it joined (shared/recover.ts). Failures are retried with backoff.

import { X509Certificate } from 'node:crypto'
import type { NodeIdentity } from '../shared/identity-store.ts'
import type { Logger } from '../shared/log.ts'
import type { RenewedCertificates } from '../shared/protocol/hosts.ts'
import { RenewalSchedule, RetryLater } from '../shared/renewal-schedule.ts'
import { certificateUsable, renewalDueAt, renewalNeeded } from '../shared/renewal-window.ts'
import type { AgentTunnel, TrustMessage } from './tunnel.ts'

/** A renewal asked for through a tunnel and not answered within this has failed (the proxy may have gone). */
const TUNNEL_ANSWER_MS = 30_000

/**
 * Past the recovery window nothing changes until an admin acts (a new token, or a longer
 * `auth_service.recovery_window`): the node asks again hourly, and logs what would re-admit it.
 */
export const PAST_WINDOW_RETRY_MS = 3_600_000

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
  private readonly schedule: RenewalSchedule
  private pending?: Pending

  constructor(options: NodeRenewalOptions) {
    this.options = options
    this.schedule = new RenewalSchedule({
      what: "this node's certificates",
      certificate: () => new X509Certificate(options.identity().tlsCertPem),
      renew: () => this.renew(),
      // Due in the renewal window, and at once when the CA that signs now did not issue it.
      dueAt: (cert) => (renewalNeeded(cert, options.identity().hostCAPems[0]) ? Date.now() : renewalDueAt(cert)),
      log: options.log,
    })
  }

  start(): void {
    this.schedule.start()
  }

  /** The trusted CAs changed: renews at once if the CA that signs now did not issue the certificate. */
  trustChanged(): void {
    const identity = this.options.identity()
    if (renewalNeeded(new X509Certificate(identity.tlsCertPem), identity.hostCAPems[0])) this.schedule.renewNow()
  }

  /** A tunnel's control stream answered a renewal: 'certs' or 'renew_failed'. */
  answered(tunnel: AgentTunnel, message: Exclude<TrustMessage, { type: 'ca' }>): void {
    const pending = this.pending
    if (message.type === 'certs') {
      const { type: _, ...renewed } = message
      // Unasked (another version of the proxy): taken all the same, it is for our key.
      if (pending?.tunnel === tunnel) pending.resolve(renewed)
      else this.options.apply(renewed, 'renewed')
    } else if (pending?.tunnel === tunnel) {
      pending.reject(new Error(message.error))
    }
  }

  stop(): void {
    this.schedule.stop()
    this.pending?.reject(new Error('the node is stopping'))
  }

  private async renew(): Promise<void> {
    const identity = this.options.identity()
    if (!certificateUsable(identity)) {
      this.options.unusable()
      return this.recover(identity)
    }
    const renewed = this.options.tunnelMode() ? await this.throughTunnel() : await this.direct(identity)
    this.options.apply(renewed, 'renewed')
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

  private async recover(identity: NodeIdentity): Promise<void> {
    const { PastRecoveryWindow, recoverCertificates } = await import('../shared/recover.ts')
    try {
      this.options.apply(await recoverCertificates(identity), 'recovered')
    } catch (error) {
      if (!(error instanceof PastRecoveryWindow)) throw error
      this.options.log.error(error.message, { host_id: identity.hostId, readmit: error.readmit })
      throw new RetryLater(error.message, PAST_WINDOW_RETRY_MS)
    }
  }
}
