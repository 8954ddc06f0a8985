// The proxy's own host certificate, renewed before it lapses: on a timer once two thirds of
// its lifetime has passed, and at once when the host CA that signs changes (a rotation),
// with the proxy's current identity. One that expired anyway (the proxy was down for longer
// than its lifetime) is recovered with its keys (shared/recover.ts). New connections get
// the new certificate; live tunnels and user connections keep the one they opened with.

import { X509Certificate } from 'node:crypto'
import { ApiClient } from '../shared/api-client.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import type { Logger } from '../shared/log.ts'
import type { RenewedCertificates } from '../shared/protocol/hosts.ts'
import { PastRecoveryWindow, recoverCertificates } from '../shared/recover.ts'
import { RenewalSchedule, RetryLater } from '../shared/renewal-schedule.ts'
import { certificateUsable, renewalDueAt, renewalNeeded } from '../shared/renewal-window.ts'

/** Past the recovery window only an admin can help: asked again hourly. */
const PAST_WINDOW_RETRY_MS = 3_600_000

export interface OwnCertificateOptions {
  identity: () => NodeIdentity
  /** Puts new certificates in place. */
  apply: (renewed: RenewedCertificates, how: 'renewed' | 'recovered') => void
  log: Logger
}

export class OwnCertificate {
  private readonly options: OwnCertificateOptions
  private readonly schedule: RenewalSchedule

  constructor(options: OwnCertificateOptions) {
    this.options = options
    this.schedule = new RenewalSchedule({
      what: "this proxy's certificate",
      certificate: () => new X509Certificate(options.identity().tlsCertPem),
      renew: () => this.renew(),
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

  stop(): void {
    this.schedule.stop()
  }

  private async renew(): Promise<void> {
    const identity = this.options.identity()
    if (!certificateUsable(identity)) return this.recover(identity)
    // A client of its own: the proxy's main one is replaced when certificates or CAs change.
    const client = new ApiClient({ server: identity.authServers[0], caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
    try {
      this.options.apply(await client.call('POST /v1/renew'), 'renewed')
    } finally {
      await client.close()
    }
  }

  private async recover(identity: NodeIdentity): Promise<void> {
    try {
      this.options.apply(await recoverCertificates(identity), 'recovered')
    } catch (error) {
      if (!(error instanceof PastRecoveryWindow)) throw error
      this.options.log.error(error.message, { host_id: identity.hostId, readmit: error.readmit })
      throw new RetryLater(error.message, PAST_WINDOW_RETRY_MS)
    }
  }
}
