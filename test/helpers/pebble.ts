// For tests: Pebble, Let's Encrypt's ACME test server, with pebble-challtestsrv as its DNS
// server, both on loopback (Debian package `pebble`). Pebble validates a challenge by
// resolving the domain through challtestsrv and connecting to the ports in its config, so
// a test points those at its own listeners. Debian ships no certificate for Pebble's own
// HTTPS, so one is issued here from a throwaway CA: that CA is what an ACME client must trust.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request } from 'node:https'
import { join } from 'node:path'
import { loopbackCert, testCA } from './certs.ts'
import { freePort, tempDir } from './cluster.ts'

/** Why Pebble cannot run here, or undefined when it can. */
export function pebbleMissing(): string | undefined {
  for (const binary of ['pebble', 'pebble-challtestsrv']) {
    // Both print their usage and exit 2 for -h; only a missing binary gives an error.
    if (spawnSync(binary, ['-h'], { stdio: 'ignore' }).error) return `${binary} is not installed (apt-get install pebble)`
  }
  return undefined
}

// The daemon runs under a small shell that ends it when the shell's standard input closes:
// on stop(), and also when the test process dies without running its teardowns (a tap
// timeout), so no Pebble outlives its test holding ports. The shell exits with the daemon.
const WATCHDOG = 'exec 3<&0; "$@" </dev/null & pid=$!; (read _ <&3; kill $pid 2>/dev/null) & wait $pid'

class Daemon {
  readonly output: string[] = []
  private readonly child: ChildProcess
  private readonly exited: Promise<void>

  constructor(command: string, args: string[], env: Record<string, string> = {}) {
    this.child = spawn('sh', ['-c', WATCHDOG, 'sh', command, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    const keep = (chunk: Buffer) => this.output.push(chunk.toString())
    this.child.stdout!.on('data', keep)
    this.child.stderr!.on('data', keep)
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()))
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  async stop(): Promise<void> {
    this.child.stdin!.end()
    await this.exited
  }
}

/** Retries `attempt` until it resolves, while `daemon` runs; for a server that is starting. */
async function whenUp<T>(daemon: Daemon, what: string, attempt: () => Promise<T>): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      return await attempt()
    } catch (error) {
      if (!daemon.running || tries >= 100) throw new Error(`${what} did not start: ${(error as Error).message}\n${daemon.output.join('')}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
}

/** pebble-challtestsrv serving DNS only; names resolve to nothing until addA() says otherwise. */
export class ChallTestServer {
  dnsAddress = ''
  private managementPort = 0
  private daemon?: Daemon

  async start(): Promise<this> {
    const dnsPort = await freePort()
    this.managementPort = await freePort()
    this.dnsAddress = `127.0.0.1:${dnsPort}`
    this.daemon = new Daemon('pebble-challtestsrv', [
      '-dns01',
      this.dnsAddress,
      '-management',
      `127.0.0.1:${this.managementPort}`,
      '-http01',
      '',
      '-https01',
      '',
      '-tlsalpn01',
      '',
      '-defaultIPv4',
      '',
      '-defaultIPv6',
      '',
    ])
    await whenUp(this.daemon, 'pebble-challtestsrv', () => this.post('/clear-a', { host: 'nothing.invalid' }))
    return this
  }

  addA(host: string, address: string): Promise<void> {
    return this.post('/add-a', { host, addresses: [address] })
  }

  stop(): Promise<void> {
    return this.daemon?.stop() ?? Promise.resolve()
  }

  private post(path: string, body: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: this.managementPort, path, method: 'POST' }, (res) => {
        res.resume()
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`challtestsrv ${path}: HTTP ${res.statusCode}`))))
      })
      req.on('error', reject)
      req.end(JSON.stringify(body))
    })
  }
}

export interface PebbleOptions {
  /** Where challtestsrv answers DNS. */
  dnsServer: string
  /** The port Pebble connects to for TLS-ALPN-01 and for HTTP-01. */
  tlsPort: number
  httpPort: number
  /** Lifetime of the certificates it issues; Pebble's default is five years. */
  validitySeconds?: number
  /** Names it refuses to issue for. */
  blocklist?: string[]
}

export class Pebble {
  directoryUrl = ''
  /** The root Pebble's own HTTPS chains to: the AcmeOptions.caBundle for it. */
  caBundle = ''
  private managementPort = 0
  private daemon?: Daemon
  private readonly options: PebbleOptions

  constructor(options: PebbleOptions) {
    this.options = options
  }

  async start(): Promise<this> {
    const dir = tempDir('warren-pebble-')
    const authority = testCA('Pebble HTTPS test CA', 'Warren tests', 1)
    const ca = authority.ca
    const { certPem: certificate, keyPem } = loopbackCert(authority, { CN: 'localhost' }, ['serverAuth'], 86_400_000)
    writeFileSync(join(dir, 'cert.pem'), certificate)
    writeFileSync(join(dir, 'key.pem'), keyPem)
    this.caBundle = ca.certPem

    const port = await freePort()
    this.managementPort = await freePort()
    const config = {
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${this.managementPort}`,
        certificate: join(dir, 'cert.pem'),
        privateKey: join(dir, 'key.pem'),
        httpPort: this.options.httpPort,
        tlsPort: this.options.tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        domainBlocklist: this.options.blocklist ?? [],
        ...(this.options.validitySeconds ? { certificateValidityPeriod: this.options.validitySeconds } : {}),
      },
    }
    writeFileSync(join(dir, 'pebble.json'), JSON.stringify(config))
    this.daemon = new Daemon('pebble', ['-config', join(dir, 'pebble.json'), '-dnsserver', this.options.dnsServer], {
      PEBBLE_VA_NOSLEEP: '1', // validate at once rather than after a random pause
      PEBBLE_WFE_NONCEREJECT: '0', // by default it refuses 5% of good nonces, to exercise retries
      PEBBLE_AUTHZREUSE: '0', // every order is validated again, renewals included
    })
    this.directoryUrl = `https://127.0.0.1:${port}/dir`
    await whenUp(this.daemon, 'pebble', () => this.get(this.directoryUrl))
    return this
  }

  /** The root that Pebble's issued certificates chain to (it makes a new one each start). */
  root(): Promise<string> {
    return this.get(`https://127.0.0.1:${this.managementPort}/roots/0`)
  }

  get output(): string {
    return this.daemon?.output.join('') ?? ''
  }

  stop(): Promise<void> {
    return this.daemon?.stop() ?? Promise.resolve()
  }

  private get(url: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = request(url, { ca: this.caBundle }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (body += chunk))
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${res.statusCode}`))))
      })
      req.on('error', reject)
      req.end()
    })
  }
}
