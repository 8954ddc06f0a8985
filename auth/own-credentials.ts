// The auth server's own certificates: the TLS certificate its API presents (host CA) and
// warrenctl's admin identity (user CA), which it writes into its data dir. Both are issued
// at start and whenever the CAs change, and again when two thirds of their lifetime has
// passed (shared/renewal-schedule.ts), so that neither lapses on a server that runs for
// years, nor when its clock is set (the server's clock watch calls clockStepped). New
// connections get the new certificate; live ones keep theirs.

import { X509Certificate } from 'node:crypto'
import { formatDuration } from '../shared/duration.ts'
import { writeFileAtomic } from '../shared/files.ts'
import type { Logger } from '../shared/log.ts'
import { RenewalSchedule, type RenewalScheduleOptions } from '../shared/renewal-schedule.ts'
import { type AdminIdentityFile, adminIdentityPath } from './admin-identity.ts'
import type { Authority } from './authorities.ts'
import { issueAdminCredentials, issueServerCredentials } from './issuer.ts'

/** Lifetimes below this are for tests: every host then renews every few minutes or faster. */
const SHORT_LIFETIME_MS = 3_600_000

export interface TlsOptions {
  key: string
  cert: string
  ca: string[]
}

export interface OwnCredentialsOptions {
  hostCA: () => Authority
  userCA: () => Authority
  clusterName: string
  /** What the TLS certificate names: the listen host and `auth_service.public_addr`. */
  serverNames: string[]
  hostCertTtlMs: number
  adminCertTtlMs: number
  dataDir: string
  /** Where warrenctl reaches this server. */
  address: () => string
  /** Puts new TLS options in place for new connections. */
  apply: (options: TlsOptions) => void
  log: Logger
  /** For tests: the schedules' clock, timers and randomness. */
  schedule?: Pick<RenewalScheduleOptions, 'clock' | 'timers' | 'random'>
}

export class OwnCredentials {
  private readonly options: OwnCredentialsOptions
  private tlsCert?: X509Certificate
  private adminCert?: X509Certificate
  private readonly schedules: RenewalSchedule[]

  constructor(options: OwnCredentialsOptions) {
    this.options = options
    const clock = options.schedule?.clock ?? Date.now
    // Both are issued by this server's clock: one not valid yet by it was issued while the
    // clock ran ahead, and is not valid yet by anyone else's either once it has been set back.
    const dueNow = (cert: X509Certificate) => clock() < cert.validFromDate.getTime()
    const schedule = { ...options.schedule, dueNow, log: options.log }
    this.schedules = [
      new RenewalSchedule({ what: "the auth server's TLS certificate", certificate: () => this.tlsCert!, renew: () => options.apply(this.tlsOptions()), ...schedule }),
      new RenewalSchedule({ what: "warrenctl's admin identity", certificate: () => this.adminCert!, renew: () => this.writeAdminIdentity(), ...schedule }),
    ]
  }

  /** A certificate from the signing host CA, and every trusted CA for client certificates. */
  tlsOptions(): TlsOptions {
    const { hostCA, userCA, clusterName, serverNames, hostCertTtlMs } = this.options
    const credentials = issueServerCredentials(hostCA(), { clusterName, role: 'auth', names: serverNames, ttlMs: hostCertTtlMs })
    this.tlsCert = new X509Certificate(credentials.certPem)
    return { key: credentials.keyPem, cert: credentials.certPem, ca: [...hostCA().tlsCertPems, ...userCA().tlsCertPems] }
  }

  writeAdminIdentity(): void {
    const { hostCA, userCA, clusterName, adminCertTtlMs, dataDir, address } = this.options
    const credentials = issueAdminCredentials(userCA(), clusterName, adminCertTtlMs)
    const identity: AdminIdentityFile = {
      auth_server: address(),
      cluster_name: clusterName,
      host_ca_certs: hostCA().tlsCertPems,
      cert: credentials.certPem,
      key: credentials.keyPem,
    }
    writeFileAtomic(adminIdentityPath(dataDir), JSON.stringify(identity, null, 2))
    this.adminCert = new X509Certificate(credentials.certPem)
  }

  /** Renews both on their timers (tlsOptions and writeAdminIdentity have issued the first ones). */
  start(): void {
    const { hostCertTtlMs, adminCertTtlMs, log } = this.options
    for (const [key, ttl] of [
      ['host_cert_ttl', hostCertTtlMs],
      ['admin_cert_ttl', adminCertTtlMs],
    ] as const) {
      if (ttl < SHORT_LIFETIME_MS)
        log.warn(`auth_service.${key} is ${formatDuration(ttl)}: certificates this short are renewed every few minutes or faster, which suits tests, not a fleet`)
    }
    for (const schedule of this.schedules) schedule.start()
  }

  /** After the CAs changed: both again from the signing CAs, and their timers from the new ones. */
  reissue(): void {
    this.options.apply(this.tlsOptions())
    this.writeAdminIdentity()
    for (const schedule of this.schedules) schedule.start()
  }

  /**
   * The wall clock was set (by `byMs`): both renewals are timed again by the clock as it
   * reads now, and a certificate it no longer finds valid (expired in a step forward, or
   * issued while it ran ahead before a step back) is issued again at once.
   */
  clockStepped(byMs: number): void {
    for (const schedule of this.schedules) schedule.clockStepped(byMs)
  }

  stop(): void {
    for (const schedule of this.schedules) schedule.stop()
  }
}
