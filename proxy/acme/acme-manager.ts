// Keeps the proxy's web certificate issued by an ACME server (Let's Encrypt, or any RFC 8555
// CA): loads it from the CertStore or obtains one, renews it when a third of its lifetime is
// left, and emits 'certificate' each time a new one is in place so that the proxy builds a
// new SecureContext for new connections while live ones keep theirs.
//
// The account key and the certificate live in the CertStore (`acme/account`,
// `acme/cert/<first domain>`), so a restarted proxy, or another one sharing the store,
// neither registers again nor asks for a certificate it already has. Any proxy can write the
// store, so a stored certificate is served only if it chains to a trusted root
// (cert-store.ts checkServable); one that does not is treated as absent.

import { generateKeyPairSync, type X509Certificate } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { Agent } from 'node:https'
import type { SecureContext } from 'node:tls'
import type { Authorization, Client } from 'acme-client'
import acme from 'acme-client'
import { Backoff } from '../../shared/backoff.ts'
import type { Logger } from '../../shared/log.ts'
import { checkDirectory, trustAcmeServer } from './acme-server.ts'
import {
  ACCOUNT_KEY,
  type AccountRecord,
  type CertStore,
  certificateKey,
  checkServable,
  describeCertificate,
  type ManagedCertificate,
  parseAccountRecord,
  parseCertificateRecord,
  trustedRoots,
} from './cert-store.ts'
import { ChallengeResponder } from './challenge-responder.ts'
import { AcmeError } from './errors.ts'
import { coversDomains, DEFAULT_RENEW_WHEN_REMAINING, MAX_TIMER_MS, RETRY_BASE_MS, RETRY_CAP_MS, renewalTime, validateFraction } from './renewal.ts'

export type ChallengeType = 'tls-alpn-01' | 'http-01'

export interface AcmeOptions {
  /** The ACME server's directory, e.g. https://acme-v02.api.letsencrypt.org/directory. */
  directoryUrl: string
  /** The account's contact; the CA writes here about expiring certificates and policy changes. */
  email: string
  /** The names on the certificate; the first one names it in the store. */
  domains: string[]
  store: CertStore
  /**
   * Extra trusted roots (PEM, one or more) for the ACME server's HTTPS and for the certificates
   * it issues, e.g. Pebble's: a private or test CA. Node's public roots are always trusted.
   */
  caBundle?: string
  /** Renew when less than this fraction of the lifetime remains. Default 1/3. */
  renewWhenRemaining?: number
  log: Logger
  /** Milliseconds since the epoch; tests move it. Default Date.now. */
  clock?: () => number
  /**
   * The challenges this proxy can answer, most preferred first. Default ['tls-alpn-01'] (the
   * web port must be reachable as port 443 of each domain); add 'http-01' when port 80
   * of each domain serves httpChallenge().
   */
  challengeTypes?: ChallengeType[]
}

export interface AcmeCertificate {
  keyPem: string
  /** The leaf, then the chain the ACME server sent. */
  certPem: string
  /** Milliseconds since the epoch. */
  notAfter: number
}

export interface AcmeManagerEvents {
  certificate: [certificate: AcmeCertificate]
}

const CHALLENGE_TYPES: readonly ChallengeType[] = ['tls-alpn-01', 'http-01']
// How acme-client polls an order or challenge: 1 s, doubling to 10 s, about a minute in all.
const POLLING = { backoffAttempts: 10, backoffMin: 1_000, backoffMax: 10_000 }
// A DNS name as ACME issues it: letters, digits, hyphens, dots; no wildcard, no trailing dot.
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

export class AcmeManager extends EventEmitter<AcmeManagerEvents> {
  readonly domains: readonly string[]
  private readonly options: AcmeOptions
  private readonly fraction: number
  private readonly clock: () => number
  private readonly challengeTypes: readonly ChallengeType[]
  /** What a certificate from the store must chain to. */
  private readonly roots: readonly X509Certificate[]
  private readonly log: Logger
  private readonly responder = new ChallengeResponder()
  private readonly retries = new Backoff({ baseMs: RETRY_BASE_MS, capMs: RETRY_CAP_MS })
  private trust?: { agent: Agent; release: () => void }
  private installed?: ManagedCertificate
  private inflight?: Promise<ManagedCertificate>
  private timer?: NodeJS.Timeout
  private retryAt?: number
  private stopped = false
  /** Orders placed with the ACME server since start (a certificate from the store needs none). */
  orders = 0

  constructor(options: AcmeOptions) {
    super()
    this.options = options
    this.log = options.log
    this.clock = options.clock ?? Date.now
    this.fraction = validateFraction(options.renewWhenRemaining ?? DEFAULT_RENEW_WHEN_REMAINING)
    if (!options.domains.length) throw new AcmeError('ACME needs at least one domain')
    const domains = options.domains.map((name) => name.toLowerCase())
    for (const name of domains) {
      if (!DOMAIN.test(name)) throw new AcmeError(`not a domain name an ACME certificate can carry here: ${JSON.stringify(name)}`)
    }
    this.domains = [...new Set(domains)]
    try {
      this.roots = trustedRoots(options.caBundle)
    } catch (error) {
      throw new AcmeError(`caBundle holds a certificate that cannot be read: ${(error as Error).message}`)
    }
    this.challengeTypes = options.challengeTypes ?? ['tls-alpn-01']
    const unknown = this.challengeTypes.filter((type) => !CHALLENGE_TYPES.includes(type))
    if (!this.challengeTypes.length || unknown.length) {
      throw new AcmeError(`ACME challenge types must be among ${CHALLENGE_TYPES.join(', ')}; got ${this.challengeTypes.join(', ') || 'none'}`)
    }
  }

  /** TLS-ALPN-01: the context answering a validator's ClientHello for `servername`, while a challenge for it is pending. */
  challengeContext(servername: string): SecureContext | undefined {
    return this.responder.tlsAlpnContext(servername)
  }

  /** HTTP-01: the body for GET /.well-known/acme-challenge/<token>, while that challenge is pending. */
  httpChallenge(token: string): string | undefined {
    return this.responder.httpKeyAuthorization(token)
  }

  current(): AcmeCertificate | undefined {
    return this.installed && publicView(this.installed)
  }

  /**
   * Puts a certificate in place: the stored one when it is valid and names every domain,
   * else a new one from the ACME server (a failure rejects, naming the cause). A stored
   * certificate that is due for renewal is served while the renewal runs in the background.
   */
  async start(): Promise<void> {
    this.stopped = false
    if (this.options.caBundle) this.trust ??= trustAcmeServer(this.options.directoryUrl, this.options.caBundle)
    const stored = await this.loadCertificate()
    if (stored) {
      this.install(stored)
      this.log.info('ACME certificate loaded from the store', { domains: this.domains, not_after: new Date(stored.notAfter).toISOString() })
    } else {
      this.install(await this.obtain())
    }
    this.schedule()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
    this.responder.clear()
    this.trust?.release()
    this.trust = undefined
  }

  /**
   * A stored certificate worth serving: it parses, a trusted CA issued it, it names every
   * domain and has not expired.
   */
  private async loadCertificate(): Promise<ManagedCertificate | undefined> {
    const key = certificateKey(this.domains)
    const text = await this.options.store.get(key)
    if (text === undefined) return undefined
    let stored: ManagedCertificate
    try {
      stored = parseCertificateRecord(text)
      checkServable(stored, this.roots, this.clock())
    } catch (error) {
      this.log.warn(`ignoring the stored ACME certificate ${key}: ${(error as Error).message}; obtaining a new one`)
      return undefined
    }
    if (!coversDomains(stored.domains, this.domains)) {
      this.log.info('the stored ACME certificate does not name every configured domain; obtaining a new one', { stored: stored.domains, domains: this.domains })
      return undefined
    }
    if (stored.notAfter <= this.clock()) {
      this.log.info('the stored ACME certificate has expired; obtaining a new one', { not_after: new Date(stored.notAfter).toISOString() })
      return undefined
    }
    return stored
  }

  private install(certificate: ManagedCertificate): void {
    if (this.stopped) return
    this.installed = certificate
    this.emit('certificate', publicView(certificate))
  }

  private schedule(): void {
    clearTimeout(this.timer)
    if (this.stopped || !this.installed) return
    const at = this.retryAt ?? renewalTime(this.installed, this.fraction)
    const delay = Math.min(Math.max(0, at - this.clock()), MAX_TIMER_MS)
    this.timer = setTimeout(() => void this.renewIfDue(), delay)
    // The proxy's listeners keep the process alive; a renewal timer alone should not.
    this.timer.unref()
  }

  private async renewIfDue(): Promise<void> {
    const due = this.retryAt ?? (this.installed ? renewalTime(this.installed, this.fraction) : 0)
    if (this.clock() < due) return this.schedule() // a long wait re-armed in steps
    try {
      this.install((await this.renewedElsewhere()) ?? (await this.obtain()))
      this.retryAt = undefined
      this.retries.reset()
    } catch (error) {
      const wait = 5_000 + this.retries.next()
      this.retryAt = this.clock() + wait
      const expired = this.installed && this.installed.notAfter <= this.clock()
      this.log.error(`ACME renewal failed, retrying in ${Math.round(wait / 1000)} s: ${(error as Error).message}`, {
        domains: this.domains,
        ...(this.installed ? { not_after: new Date(this.installed.notAfter).toISOString(), expired } : {}),
      })
    }
    this.schedule()
  }

  /**
   * A certificate that another proxy sharing the store has already renewed: taking it saves
   * an order (and the CA's duplicate-certificate limits).
   */
  private async renewedElsewhere(): Promise<ManagedCertificate | undefined> {
    const stored = await this.loadCertificate()
    if (!stored || (this.installed && stored.notAfter <= this.installed.notAfter)) return undefined
    if (this.clock() >= renewalTime(stored, this.fraction)) return undefined
    this.log.info('ACME certificate renewed elsewhere, taken from the store', { domains: this.domains, not_after: new Date(stored.notAfter).toISOString() })
    return stored
  }

  /** One issuance at a time: a renewal and a start never race for the same order. */
  private obtain(): Promise<ManagedCertificate> {
    this.inflight ??= this.issue().finally(() => {
      this.inflight = undefined
    })
    return this.inflight
  }

  private async issue(): Promise<ManagedCertificate> {
    const { directoryUrl } = this.options
    const names = this.domains.join(', ')
    try {
      await checkDirectory(directoryUrl, this.trust?.agent)
      const account = await this.loadAccount()
      const client = new acme.Client({ directoryUrl, accountKey: account.keyPem, ...POLLING })
      await this.register(client, account)
      this.log.info('requesting an ACME certificate', { domains: this.domains, directory: directoryUrl })
      this.orders++
      const order = await step('placing the order', () => client.createOrder({ identifiers: this.domains.map((value) => ({ type: 'dns', value })) }))
      const authorizations = await step('fetching the authorizations', () => client.getAuthorizations(order))
      // A failed authorization must not leave the others' challenges in flight unobserved.
      const results = await Promise.allSettled(authorizations.map((authz) => this.authorize(client, authz)))
      const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected')
      if (failed) throw failed.reason
      const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
      const [, csr] = await acme.crypto.createCsr({ commonName: this.domains[0], altNames: [...this.domains] }, keyPem)
      const finalized = await step('finalizing the order', () => client.finalizeOrder(order, csr))
      const certPem = await step('downloading the certificate', () => client.getCertificate(finalized))
      const certificate = describeCertificate({ keyPem, certPem })
      if (!coversDomains(certificate.domains, this.domains)) {
        throw new AcmeError(`the issued certificate names ${certificate.domains.join(', ')}, not every requested domain`)
      }
      // Served all the same (the ACME server's HTTPS vouches for it), but the store's check
      // would refuse it: say so, or every restart and every other proxy orders again.
      try {
        checkServable(certificate, this.roots, this.clock())
      } catch (error) {
        this.log.warn(
          `the issued ACME certificate will not be taken from the store: ${(error as Error).message}; ` +
            "restarts and the other proxies will order their own (give the ACME CA's root in ca_file)",
        )
      }
      await this.options.store.put(certificateKey(this.domains), JSON.stringify({ keyPem, certPem }))
      this.log.info('ACME certificate issued', { domains: this.domains, not_after: new Date(certificate.notAfter).toISOString() })
      return certificate
    } catch (error) {
      throw new AcmeError(`could not obtain a certificate for ${names} from ${directoryUrl}: ${(error as Error).message}`, { cause: error })
    }
  }

  /** The stored account key, or a new one stored before the ACME server hears of it. */
  private async loadAccount(): Promise<AccountRecord> {
    const text = await this.options.store.get(ACCOUNT_KEY)
    if (text !== undefined) {
      try {
        return parseAccountRecord(text)
      } catch (error) {
        this.log.warn(`ignoring the stored ACME account: ${(error as Error).message}; creating a new account`)
      }
    }
    const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
    const account: AccountRecord = { keyPem }
    try {
      await this.options.store.put(ACCOUNT_KEY, JSON.stringify(account))
    } catch (error) {
      // The auth server keeps the first account and refuses another key: another proxy
      // created one meanwhile, and this proxy shares it.
      const created = await this.options.store.get(ACCOUNT_KEY)
      if (created === undefined || created === text) throw error
      return parseAccountRecord(created)
    }
    return account
  }

  /** newAccount is idempotent for a key (RFC 8555 7.3.1): a known key gets its existing account back. */
  private async register(client: Client, account: AccountRecord): Promise<void> {
    const { email, directoryUrl } = this.options
    await step('registering the account', () =>
      client.createAccount({
        termsOfServiceAgreed: true,
        ...(email ? { contact: [`mailto:${email}`] } : {}),
      }),
    )
    const url = client.getAccountUrl()
    if (url === account.url && directoryUrl === account.directoryUrl) return
    if (account.url && directoryUrl === account.directoryUrl) this.log.warn('the ACME server gave a different account URL for the stored key', { was: account.url, now: url })
    await this.options.store.put(ACCOUNT_KEY, JSON.stringify({ keyPem: account.keyPem, url, directoryUrl }))
  }

  private async authorize(client: Client, authz: Authorization): Promise<void> {
    const domain = authz.identifier.value
    if (authz.status === 'valid') return
    const challenge = this.challengeTypes.map((type) => authz.challenges.find((offered) => (offered.type as string) === type)).find((found) => found !== undefined)
    if (!challenge) {
      throw new AcmeError(
        `the ACME server offers no ${this.challengeTypes.join(' or ')} challenge for ${domain} ` +
          `(it offers ${authz.challenges.map((offered) => offered.type).join(', ') || 'none'})`,
      )
    }
    const keyAuthorization = await client.getChallengeKeyAuthorization(challenge)
    // acme-client's types list only http-01 and dns-01; the server's JSON says tls-alpn-01.
    const type = challenge.type as string
    const withdraw = type === 'tls-alpn-01' ? this.responder.addTlsAlpn(domain, keyAuthorization) : this.responder.addHttp(challenge.token, keyAuthorization)
    try {
      await step(`validating ${domain} by ${type}`, async () => {
        await client.completeChallenge(challenge)
        await client.waitForValidStatus(challenge)
      })
    } catch (error) {
      // Leave no pending authorization behind to count against the account's limits.
      await client.deactivateAuthorization(authz).catch(() => {})
      throw error
    } finally {
      withdraw()
    }
  }
}

/** Runs one protocol step; a failure names the step and keeps the server's reason. */
async function step<T>(description: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action()
  } catch (error) {
    if (error instanceof AcmeError) throw error
    const reason = (error as Error).message || String(error)
    throw new AcmeError(`${description} failed: ${reason}`, { cause: error })
  }
}

function publicView(certificate: ManagedCertificate): AcmeCertificate {
  return { keyPem: certificate.keyPem, certPem: certificate.certPem, notAfter: certificate.notAfter }
}
