// Direct heartbeats to the auth server over mutual TLS with the host certificate. A failed
// beat is logged and retried at the next tick: presence simply lapses while the auth
// server is away, and returns with the first beat after.

import { ApiClient } from '../shared/api-client.ts'
import type { Logger } from '../shared/log.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'

export class Heartbeat {
  private readonly client: ApiClient
  private readonly intervalMs: number
  private readonly log: Logger
  private labels: Record<string, string>
  private timer?: NodeJS.Timeout
  private failing = false
  /** Resolves after the first successful beat, so callers can wait for presence. */
  readonly firstBeat: Promise<void>
  private markFirstBeat!: () => void

  constructor(identity: NodeIdentity, server: string, options: { intervalMs: number; labels: Record<string, string>; log: Logger }) {
    this.client = new ApiClient({ server, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem, timeoutMs: options.intervalMs * 2 })
    this.intervalMs = options.intervalMs
    this.labels = options.labels
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

  async beat(): Promise<void> {
    try {
      await this.client.call('POST', '/v1/heartbeat', { labels: this.labels })
      if (this.failing) this.log.info(`heartbeats reach ${this.client.server} again`)
      this.failing = false
      this.markFirstBeat()
    } catch (error) {
      if (!this.failing) this.log.warn(`heartbeat to ${this.client.server} failed: ${(error as Error).message}`)
      this.failing = true
    }
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    await this.client.close()
  }
}
