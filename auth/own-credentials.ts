// The auth server's own certificates: the TLS certificate its API presents (host CA) and
// warrenctl's admin identity (user CA), which it writes into its data dir. Both are issued
// at start and whenever the CAs change, and again when two thirds of their lifetime has
// passed (shared/renewal-schedule.ts), so that neither lapses on a server that runs for
// years, nor when its clock is set (the server's clock watch calls clockStepped). New
// connections get the new certificate; live ones keep theirs.
//
// A CA whose certificate has expired signs nothing (auth/ca-expiry.ts), yet the server must
// still start and let warrenctl rotate that CA. While it is expired, the certificate of its
// type comes from a stand-in: a CA made in memory for this process, for that one expired
// certificate, trusted by no host of the cluster. For the host CA, the server's TLS
// certificate, which warrenctl trusts through the identity file's server_ca_certs (written
// only while the host CA is expired); for the user CA, the admin identity, which this server
// takes for the admin alone (Callers), while the user CA is expired and through the phases
// init and update_clients of the rotation that replaces that expired certificate: the
// request that steps it to update_clients comes with the stand-in's identity, and is
// answered on that connection once the server is in update_clients. Once its CA is neither
// expired nor in those phases of that rotation (update_servers, standby, a rotation of
// another certificate), a stand-in is forgotten for good: a later rotation does not bring
// it back, and a copy of an identity it signed is refused however long it has left.

import { X509Certificate } from 'node:crypto'
import { formatDuration } from '../shared/duration.ts'
import { writeFileAtomic } from '../shared/files.ts'
import type { Logger } from '../shared/log.ts'
import { RenewalSchedule, type RenewalScheduleOptions } from '../shared/renewal-schedule.ts'
import { type AdminIdentityFile, adminIdentityPath } from './admin-identity.ts'
import { Authority, type AuthorityType, newKeySet, type RotationPhase } from './authorities.ts'
import { issueAdminCredentials, issueServerCredentials } from './issuer.ts'

/** Lifetimes below this are for tests: every host then renews every few minutes or faster. */
const SHORT_LIFETIME_MS = 3_600_000

/**
 * The phases of the rotation that replaces an expired CA certificate in which its stand-in
 * is still trusted: before the new CA signs (init), and the phase the request that has it
 * sign (update_clients) is answered in. The identity file holds the new CA's certificate
 * from update_clients on.
 */
const STAND_IN_PHASES: ReadonlySet<RotationPhase> = new Set(['init', 'update_clients'])

/** A CA made in memory for this process's own certificates while `replaces`, its CA's signing certificate, has expired. */
interface StandIn {
  ca: Authority
  replaces: string
}

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
  private readonly clock: () => number
  /** Made the first time a CA certificate is found expired; forgotten for good once it may no longer be trusted (trustedStandIn). */
  private readonly standIns = new Map<AuthorityType, StandIn>()
  /** The stand-in host CAs the identity file was last written with: when those change, it is written again. */
  private identityServerCAs = ''
  /** The stand-in user CAs the TLS options last trusted: when those change, they are applied again. */
  private tlsAdminCAs = ''

  constructor(options: OwnCredentialsOptions) {
    this.options = options
    const clock = options.schedule?.clock ?? Date.now
    this.clock = clock
    // Both are issued by this server's clock: one not valid yet by it was issued while the
    // clock ran ahead, and is not valid yet by anyone else's either once it has been set back.
    const dueNow = (cert: X509Certificate) => clock() < cert.validFromDate.getTime()
    const schedule = { ...options.schedule, dueNow, log: options.log }
    this.schedules = [
      new RenewalSchedule({ what: "the auth server's TLS certificate", certificate: () => this.tlsCert!, renew: () => this.renewTls(), ...schedule }),
      new RenewalSchedule({ what: "warrenctl's admin identity", certificate: () => this.adminCert!, renew: () => this.renewAdmin(), ...schedule }),
    ]
  }

  /** A certificate from the signing host CA (or its stand-in), and every trusted CA for client certificates. */
  tlsOptions(): TlsOptions {
    const { hostCA, userCA, clusterName, serverNames, hostCertTtlMs } = this.options
    const credentials = issueServerCredentials(this.signer('host', hostCA()), {
      clusterName,
      role: 'auth',
      names: serverNames,
      ttlMs: hostCertTtlMs,
      nowMs: this.clock(),
    })
    this.tlsCert = new X509Certificate(credentials.certPem)
    const adminCAs = this.adminStandInPems()
    this.tlsAdminCAs = adminCAs.join('')
    return { key: credentials.keyPem, cert: credentials.certPem, ca: [...hostCA().tlsCertPems, ...userCA().tlsCertPems, ...adminCAs] }
  }

  writeAdminIdentity(): void {
    const { hostCA, userCA, clusterName, adminCertTtlMs, dataDir, address } = this.options
    const credentials = issueAdminCredentials(this.signer('user', userCA()), clusterName, adminCertTtlMs, this.clock())
    const serverCAs = this.serverStandInPems()
    const identity: AdminIdentityFile = {
      auth_server: address(),
      cluster_name: clusterName,
      host_ca_certs: hostCA().tlsCertPems,
      ...(serverCAs.length > 0 ? { server_ca_certs: serverCAs } : {}),
      cert: credentials.certPem,
      key: credentials.keyPem,
    }
    writeFileAtomic(adminIdentityPath(dataDir), JSON.stringify(identity, null, 2))
    this.adminCert = new X509Certificate(credentials.certPem)
    this.identityServerCAs = serverCAs.join('')
  }

  /**
   * The CAs besides the user CA whose certificates this server takes as the admin identity:
   * the user CA's stand-in while it may be trusted (trustedStandIn), else none.
   */
  adminStandInPems(): string[] {
    return this.trustedStandIn('user')?.tlsCertPems ?? []
  }

  /** The stand-in that signs this server's TLS certificate while the host CA has expired, else none. */
  private serverStandInPems(): string[] {
    const standIn = this.trustedStandIn('host')
    return standIn !== undefined && this.options.hostCA().expired(this.clock()) ? standIn.tlsCertPems : []
  }

  /** `ca`, or while its certificate has expired, the stand-in for this server's own certificates. */
  private signer(type: AuthorityType, ca: Authority): Authority {
    return ca.expired(this.clock()) ? this.standInFor(type, ca) : ca
  }

  /** The stand-in for `ca`'s expired signing certificate, made the first time that one is found expired. */
  private standInFor(type: AuthorityType, ca: Authority): Authority {
    const replaces = ca.signing.tlsCertPem
    const kept = this.standIns.get(type)
    if (kept?.replaces === replaces) return kept.ca
    const standIn = new Authority({ type, clusterName: this.options.clusterName, keySets: [newKeySet(type, this.options.clusterName)] })
    this.standIns.set(type, { ca: standIn, replaces })
    const what = type === 'host' ? 'its TLS certificate, which only warrenctl on this host trusts' : "warrenctl's admin identity"
    this.options.log.warn(
      `the ${type} CA's certificate has expired: this auth server signs ${what} with a stand-in CA of its own until the ${type} CA is rotated (warrenctl auth rotate --type=${type})`,
      { ca: type },
    )
    return standIn
  }

  /**
   * The stand-in of `type` while it may be trusted: its CA's certificate has expired, or the
   * rotation that replaces exactly that certificate is in init or update_clients. Otherwise
   * it is forgotten, never to be trusted again (a CA found expired later gets a new one).
   */
  private trustedStandIn(type: AuthorityType): Authority | undefined {
    const ca = type === 'host' ? this.options.hostCA() : this.options.userCA()
    if (ca.expired(this.clock())) return this.standInFor(type, ca)
    const kept = this.standIns.get(type)
    if (kept === undefined) return undefined
    const rotation = ca.rotation
    if (rotation !== undefined && rotation.previousCertPem === kept.replaces && STAND_IN_PHASES.has(rotation.phase)) return kept.ca
    this.standIns.delete(type)
    this.options.log.info(`the ${type} CA's stand-in is forgotten: nothing it signed is trusted any more`, { ca: type })
    return undefined
  }

  /** The admin identity again; the TLS options too when the CA they must trust for it changed (the user CA expired, or was rotated). */
  private renewAdmin(): void {
    this.writeAdminIdentity()
    if (this.adminStandInPems().join('') !== this.tlsAdminCAs) this.options.apply(this.tlsOptions())
  }

  /** The TLS certificate again; the identity file too when the CA warrenctl must trust for it changed (the host CA expired, or was rotated). */
  private renewTls(): void {
    this.options.apply(this.tlsOptions())
    if (this.serverStandInPems().join('') !== this.identityServerCAs) this.writeAdminIdentity()
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
