// Direct heartbeats to the auth server over mutual TLS with the host certificate. A failed
// beat is logged and retried at the next tick: presence simply lapses while the auth
// server is away, and returns with the first beat after. Each answer carries the CAs the
// cluster trusts now, which is how a node without a tunnel follows a CA rotation.

import { ApiClient } from '../shared/api-client.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import type { Logger } from '../shared/log.ts'
import type { HeartbeatAnswer } from '../shared/protocol/hosts.ts'
import { VERSION } from '../shared/version.ts'

export interface HeartbeatOptions {
  intervalMs: number
  labels: Record<string, string>
  /**
   * Where proxies reach this node's services: `host:port`, or `:port` on the address the
   * auth server sees the heartbeat come from.
   */
  serviceAddr: string
  log: Logger
  onAnswer?: (answer: HeartbeatAnswer) => void
}

export class Heartbeat {
  private client: ApiClient
  private readonly server: string
  private readonly intervalMs: number
  private readonly onAnswer?: (answer: HeartbeatAnswer) => void
  private readonly log: Logger
  private labels: Record<string, string>
  private readonly serviceAddr: string
  private timer?: NodeJS.Timeout
  /** The last beat failed. */
  failing = false
  /** Beats the auth server accepted and beats that failed, since start. */
  ok = 0
  failed = 0
  lastOkAt?: number
  /** Resolves after the first successful beat, so callers can wait for presence. */
  readonly firstBeat: Promise<void>
  private markFirstBeat!: () => void

  constructor(identity: NodeIdentity, server: string, options: HeartbeatOptions) {
    this.server = server
    this.intervalMs = options.intervalMs
    this.onAnswer = options.onAnswer
    this.client = this.clientFor(identity)
    this.labels = options.labels
    this.serviceAddr = options.serviceAddr
    this.log = options.log
    this.firstBeat = new Promise((resolve) => (this.markFirstBeat = resolve))
  }

  start(): void {
    const tick = async () => {
      await this.beat()
      if (this.timer !== undefined) this.timer = setTimeout(tick, this.intervalMs)
    }
    this.timer = setTimeout(tick, 0)
  }

  setLabels(labels: Record<string, string>): void {
    this.labels = labels
  }

  /** New certificates or trusted CAs: the next beat connects with them. */
  setIdentity(identity: NodeIdentity): void {
    const previous = this.client
    this.client = this.clientFor(identity)
    void previous.close()
  }

  async beat(): Promise<void> {
    try {
      const answer = await this.client.call('POST /v1/heartbeat', { body: { labels: this.labels, service_addr: this.serviceAddr, version: VERSION } })
      this.onAnswer?.(answer)
      if (this.failing) this.log.info(`heartbeats reach ${this.client.server} again`)
      this.failing = false
      this.ok++
      this.lastOkAt = Date.now()
      this.markFirstBeat()
    } catch (error) {
      if (!this.failing) this.log.warn(`heartbeat to ${this.client.server} failed: ${(error as Error).message}`)
      this.failing = true
      this.failed++
    }
  }

  private clientFor(identity: NodeIdentity): ApiClient {
    return new ApiClient({ server: this.server, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem, timeoutMs: this.intervalMs * 2 })
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    await this.client.close()
  }
}
