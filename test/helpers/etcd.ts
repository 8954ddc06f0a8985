// A real single-member etcd 3 on loopback for tests: its own temporary data dir and free
// client and peer ports, stopped (and its data removed) by the caller's teardown.

import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { get as httpGet, type IncomingMessage } from 'node:http'
import { get as httpsGet } from 'node:https'
import { connect, createServer, type Socket } from 'node:net'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { freePort } from './cluster.ts'

/** Debian's `etcd-server` package installs it here; ETCD_BINARY points elsewhere. */
export const ETCD_BINARY = process.env.ETCD_BINARY ?? '/usr/bin/etcd'

/** Why etcd tests cannot run here, or false when they can (for tap's `skip`). */
export function etcdUnavailable(): string | false {
  try {
    accessSync(ETCD_BINARY, constants.X_OK)
    return false
  } catch {
    return `etcd is not installed at ${ETCD_BINARY} (Debian: apt-get install etcd-server)`
  }
}

/** A prefix no other test uses, so tests can share one etcd without seeing each other. */
export function uniquePrefix(label = 'test'): string {
  return `/warren-${label}-${randomBytes(6).toString('hex')}/`
}

export interface EtcdTlsFiles {
  /** The server's certificate (with 127.0.0.1 among its addresses) and key. */
  certFile: string
  keyFile: string
  /** Clients must present a certificate from this CA. */
  caFile: string
  /** A client certificate and key from that CA, for the health check. */
  clientCertFile: string
  clientKeyFile: string
}

export interface EtcdServerOptions {
  /** Serve clients over TLS and require client certificates. */
  tls?: EtcdTlsFiles
}

export class EtcdServer {
  readonly clientUrl: string
  readonly dataDir: string
  private readonly tls?: EtcdTlsFiles
  private readonly child: ChildProcess
  private readonly exited: Promise<void>
  private stderr = ''

  private constructor(clientUrl: string, peerUrl: string, dataDir: string, tls?: EtcdTlsFiles) {
    this.clientUrl = clientUrl
    this.dataDir = dataDir
    this.tls = tls
    const tlsFlags = tls ? [`--cert-file=${tls.certFile}`, `--key-file=${tls.keyFile}`, '--client-cert-auth', `--trusted-ca-file=${tls.caFile}`] : []
    const name = 'warren-test'
    // Drop ETCD_* variables: etcd reads its flags from them too.
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('ETCD_')))
    this.child = spawn(
      ETCD_BINARY,
      [
        `--name=${name}`,
        `--data-dir=${dataDir}`,
        `--listen-client-urls=${clientUrl}`,
        `--advertise-client-urls=${clientUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=${name}=${peerUrl}`,
        '--initial-cluster-state=new',
        `--initial-cluster-token=${randomBytes(8).toString('hex')}`,
        '--logger=zap',
        '--log-outputs=stderr',
        ...tlsFlags,
      ],
      { env, stdio: ['ignore', 'ignore', 'pipe'] },
    )
    this.child.stderr!.on('data', (chunk) => {
      // Keep the tail only: etcd is chatty and a test may run for minutes.
      this.stderr = (this.stderr + chunk).slice(-20_000)
    })
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()))
  }

  /** Starts etcd and resolves once it reports itself healthy. */
  static async start(options: EtcdServerOptions = {}): Promise<EtcdServer> {
    const scheme = options.tls ? 'https' : 'http'
    // A port found free can be taken before etcd binds it; try again with new ports.
    for (let attempt = 1; ; attempt++) {
      const dataDir = mkdtempSync(join(tmpdir(), 'warren-etcd-'))
      const server = new EtcdServer(`${scheme}://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`, dataDir, options.tls)
      try {
        await server.waitHealthy()
        return server
      } catch (error) {
        await server.stop()
        if (attempt === 3) throw error
      }
    }
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  private async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`etcd exited (${this.child.exitCode ?? this.child.signalCode}) while starting:\n${this.stderr}`)
      if (await this.healthy()) return
      await sleep(50)
    }
    throw new Error(`etcd did not become healthy within ${timeoutMs} ms:\n${this.stderr}`)
  }

  /** etcd's own /health endpoint on the client URL says {"health":"true"}. */
  private healthy(): Promise<boolean> {
    const tls = this.tls
    const url = `${this.clientUrl}/health`
    return new Promise((resolve) => {
      const onResponse = (response: IncomingMessage) => {
        let body = ''
        response.on('data', (chunk) => (body += chunk))
        response.on('end', () => resolve(/"health":\s*"true"/.test(body)))
        response.on('error', () => resolve(false))
      }
      const request = tls
        ? httpsGet(url, { ca: readFileSync(tls.caFile), cert: readFileSync(tls.clientCertFile), key: readFileSync(tls.clientKeyFile), timeout: 2000 }, onResponse)
        : httpGet(url, { timeout: 2000 }, onResponse)
      request.on('timeout', () => request.destroy())
      // Not listening yet.
      request.on('error', () => resolve(false))
    })
  }

  /** Freezes etcd (SIGSTOP): it keeps its connections but answers nothing, as a stuck or partitioned backend. */
  freeze(): void {
    this.child.kill('SIGSTOP')
  }

  /** Lets a frozen etcd run again (SIGCONT). */
  thaw(): void {
    this.child.kill('SIGCONT')
  }

  async stop(): Promise<void> {
    this.thaw()
    if (this.running) this.child.kill('SIGTERM')
    await this.exited
    rmSync(this.dataDir, { recursive: true, force: true })
  }
}

/** An IPv4 address of this machine that is not on loopback, if it has one. */
export function nonLoopbackAddress(): string | undefined {
  const addresses = Object.values(networkInterfaces()).flatMap((list) => list ?? [])
  return addresses.find((address) => address.family === 'IPv4' && !address.internal)?.address
}

/**
 * A TCP relay on this machine's non-loopback address to the etcd at `clientUrl`, which
 * listens on loopback: the same etcd, reached as a peer across a network would be.
 */
export async function relayTo(t: Test, clientUrl: string): Promise<{ host: string; port: number; address: string; connections: () => number }> {
  const target = new URL(clientUrl)
  const host = nonLoopbackAddress()
  if (host === undefined) throw new Error('no non-loopback IPv4 address here')
  const sockets = new Set<Socket>()
  let connections = 0
  const server = createServer((socket) => {
    connections++
    const upstream = connect(Number(target.port), target.hostname)
    for (const end of [socket, upstream]) {
      sockets.add(end)
      end.on('error', () => {})
      end.on('close', () => {
        socket.destroy()
        upstream.destroy()
      })
    }
    socket.pipe(upstream).pipe(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  const port = (server.address() as { port: number }).port
  return { host, port, address: `${host}:${port}`, connections: () => connections }
}
