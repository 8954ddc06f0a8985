// The proxy's publicly trusted web certificate (proxy_service.acme): an ACME certificate for
// the DNS names in public_addr, served to clients that ask for those names (browsers, curl).
// Cluster clients ask for CLUSTER_SERVER_NAME and keep getting the host-CA certificate their
// pin checks, so turning ACME on never breaks joins or tunnels.
//
// The account key and certificates live in the cluster's backend (through the auth API), so
// a restarted proxy reuses them and proxies of one cluster share them; a stored certificate
// is served only if it chains to a trusted root (the public ones and ca_file's). The proxy
// starts serving at once with its cluster certificate; ACME runs in the background and, when
// the CA is unreachable or refuses, logs why and tries again later.

import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server } from 'node:http'
import { isIP } from 'node:net'
import { createSecureContext, type SecureContext } from 'node:tls'
import { parseHostPort } from '../shared/address.ts'
import type { ApiClient } from '../shared/api-client.ts'
import { Backoff } from '../shared/backoff.ts'
import { type AcmeConfig, DEFAULTS } from '../shared/config.ts'
import { WarrenError } from '../shared/errors.ts'
import { splitPems } from '../shared/identity-store.ts'
import type { Logger } from '../shared/log.ts'
import { type AcmeCertificate, AcmeManager, type CertStore } from './acme/index.ts'

export interface WebCertificatesOptions {
  acme: AcmeConfig
  /** proxy_service.public_addr: the DNS names among them are certified. */
  publicAddrs: string[]
  /** The auth server's API as it is now (it changes when the proxy's certificate is renewed). */
  auth: () => ApiClient
  /** CAs whose client certificates the web port accepts, as in the cluster context. */
  clientCAPems: () => string[]
  log: Logger
}

// After a failed first issuance: 30 s, doubling (with jitter) up to an hour.
const RETRY = { baseMs: 30_000, capMs: 3_600_000 }

export class WebCertificates {
  readonly domains: readonly string[]
  private readonly manager: AcmeManager
  private readonly options: WebCertificatesOptions
  private readonly retries = new Backoff(RETRY)
  private certificate?: AcmeCertificate
  private cached?: { key: string; context: SecureContext }
  private httpServer?: Server
  private retryTimer?: NodeJS.Timeout
  private stopped = false
  /** Why the last attempt to obtain a certificate failed; cleared by the next certificate. */
  lastError?: string

  constructor(options: WebCertificatesOptions) {
    this.options = options
    this.domains = dnsNames(options.publicAddrs)
    if (this.domains.length === 0) {
      throw new WarrenError('proxy_service.acme is enabled, but proxy_service.public_addr names no DNS name to get a certificate for')
    }
    const { acme } = options
    let caBundle: string | undefined
    if (acme.caFile) {
      try {
        caBundle = readFileSync(acme.caFile, 'utf8')
      } catch (error) {
        throw new WarrenError(`proxy_service.acme.ca_file: cannot read ${acme.caFile}: ${(error as Error).message}`)
      }
      // Its roots vouch for the ACME server's HTTPS and for the certificates taken from the store.
      if (splitPems(caBundle).length === 0) throw new WarrenError(`proxy_service.acme.ca_file: ${acme.caFile} holds no PEM certificate`)
    }
    this.manager = new AcmeManager({
      directoryUrl: acme.uri,
      email: acme.email ?? '',
      domains: [...this.domains],
      store: new AuthCertStore(options.auth),
      ...(caBundle ? { caBundle } : {}),
      // TLS-ALPN-01 needs the web port reachable as port 443 of each name; an operator who
      // opens port 80 for us means HTTP-01 to be used.
      challengeTypes: acme.httpListenAddr ? ['http-01', 'tls-alpn-01'] : ['tls-alpn-01'],
      log: options.log,
    })
    this.manager.on('certificate', (certificate) => {
      this.certificate = certificate
      this.lastError = undefined
      options.log.info('serving the ACME certificate', { domains: this.domains, not_after: new Date(certificate.notAfter).toISOString() })
    })
  }

  /** Opens the HTTP-01 listener when configured; call once the web port listens. */
  async start(): Promise<void> {
    const address = this.options.acme.httpListenAddr
    if (address) {
      this.httpServer = await this.listenHttp(address)
      this.options.log.info(`answering ACME HTTP-01 challenges on ${this.address}`)
    }
    this.obtain()
  }

  /** For the TLS router: the ACME certificate for its names, once there is one. */
  contextByName(servername: string): SecureContext | undefined {
    const certificate = this.certificate
    if (!certificate || !this.domains.includes(servername.toLowerCase())) return undefined
    const clientCAs = this.options.clientCAPems()
    const key = certificate.certPem + clientCAs.join('')
    if (this.cached?.key !== key) {
      // Client CAs as in the cluster context, so a client certificate verifies on either.
      this.cached = { key, context: createSecureContext({ key: certificate.keyPem, cert: certificate.certPem, ca: clientCAs }) }
    }
    return this.cached.context
  }

  /** For the TLS router: the TLS-ALPN-01 certificate while a validation for the name is pending. */
  challenge(servername: string): SecureContext | undefined {
    return this.manager.challengeContext(servername)
  }

  /** The ACME certificate served, once there is one. */
  get served(): AcmeCertificate | undefined {
    return this.certificate
  }

  /** Orders this process placed with the ACME server. */
  get orders(): number {
    return this.manager.orders
  }

  get address(): string | undefined {
    const bound = this.httpServer?.address()
    return bound && typeof bound === 'object' ? `${bound.address}:${bound.port}` : undefined
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.retryTimer)
    this.manager.stop()
    this.httpServer?.close()
  }

  private obtain(): void {
    this.manager.start().then(
      () => this.retries.reset(),
      (error: Error) => {
        if (this.stopped) return
        const wait = RETRY.baseMs + this.retries.next()
        this.lastError = error.message
        this.options.log.error(`${error.message}; serving the cluster certificate meanwhile, retrying in ${Math.round(wait / 1000)} s`)
        this.retryTimer = setTimeout(() => this.obtain(), wait)
        this.retryTimer.unref()
      },
    )
  }

  /** Port 80: HTTP-01 answers, and a redirect to HTTPS for everything else. */
  private listenHttp(address: string): Promise<Server> {
    const { host, port } = parseHostPort(address, DEFAULTS.acmeHttpPort)
    const server = createHttpServer((req, res) => {
      const token = /^\/\.well-known\/acme-challenge\/([\w-]+)$/.exec(req.url ?? '')?.[1]
      const answer = token === undefined ? undefined : this.manager.httpChallenge(token)
      if (answer !== undefined) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(answer)
        return
      }
      if (token !== undefined) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('no such ACME challenge\n')
        return
      }
      res.writeHead(301, { location: `https://${this.options.publicAddrs[0]}${req.url ?? '/'}` }).end()
    })
    return new Promise((resolve, reject) => {
      server.once('error', (error) => reject(new WarrenError(`proxy_service.acme.http_listen_addr: cannot listen on ${address}: ${error.message}`)))
      server.listen(port, host, () => resolve(server))
    })
  }
}

/** The CertStore of proxy/acme, kept in the cluster's backend by the auth server. */
export class AuthCertStore implements CertStore {
  private readonly auth: () => ApiClient

  constructor(auth: () => ApiClient) {
    this.auth = auth
  }

  async get(key: string): Promise<string | undefined> {
    return (await this.auth().call('POST /v1/proxies/acme/get', { body: { key } })).value
  }

  async put(key: string, value: string): Promise<void> {
    await this.auth().call('POST /v1/proxies/acme/put', { body: { key, value } })
  }
}

/** The host names of public addresses that a public CA can certify: DNS names, not IPs. */
function dnsNames(publicAddrs: string[]): string[] {
  const names = publicAddrs.map((address) => parseHostPort(address, DEFAULTS.webPort).host.toLowerCase())
  return [...new Set(names.filter((host) => host !== '' && isIP(host) === 0 && host !== 'localhost'))]
}
