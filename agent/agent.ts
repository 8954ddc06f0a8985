// The node agent: join once (or reuse the stored identity), then heartbeat.

import type { WarrenConfig } from '../shared/config.ts'
import { resolveTokenValue, DEFAULTS } from '../shared/config.ts'
import { WarrenError } from '../shared/errors.ts'
import { createLogger, type Logger } from '../shared/log.ts'
import { Heartbeat } from './heartbeat.ts'
import { loadIdentity, saveIdentity, type NodeIdentity } from './identity-store.ts'
import { joinCluster } from './join.ts'

export interface AgentOptions {
  config: WarrenConfig
  roles: string[]
  log?: Logger
  heartbeatIntervalMs?: number
  warn?: (message: string) => void
}

export class Agent {
  readonly config: WarrenConfig
  readonly log: Logger
  identity!: NodeIdentity
  private heartbeat?: Heartbeat
  private readonly options: AgentOptions

  constructor(options: AgentOptions) {
    this.options = options
    this.config = options.config
    this.log = options.log ?? createLogger('node', { level: options.config.log.level })
  }

  async start(): Promise<void> {
    this.identity = await this.obtainIdentity()
    const server = this.identity.authServers[0]
    this.heartbeat = new Heartbeat(this.identity, server, {
      intervalMs: this.options.heartbeatIntervalMs ?? DEFAULTS.heartbeatIntervalMs,
      labels: this.config.labels,
      log: this.log,
    })
    this.heartbeat.start()
  }

  /** Resolves once the auth server has recorded this node's presence. */
  waitForPresence(): Promise<void> {
    return this.heartbeat?.firstBeat ?? Promise.reject(new Error('agent not started'))
  }

  async stop(): Promise<void> {
    await this.heartbeat?.stop()
  }

  private async obtainIdentity(): Promise<NodeIdentity> {
    const stored = loadIdentity(this.config.dataDir)
    if (stored) {
      this.log.info(`using the identity stored in ${this.config.dataDir}`, { host_id: stored.hostId, cluster: stored.clusterName })
      return stored
    }
    const server = this.config.authServers[0]
    if (!server) throw new WarrenError('no auth server to join: pass --auth-server=HOST:PORT (or auth_servers in the config file)')
    if (!this.config.authToken) throw new WarrenError('this node has not joined a cluster yet: pass --token=VALUE (or a file path starting with "/") to join')
    const identity = await joinCluster({
      authServer: server,
      token: resolveTokenValue(this.config.authToken),
      caPins: this.config.caPins,
      nodename: this.config.nodename,
      roles: this.options.roles,
      addresses: this.config.advertiseIp ? [this.config.advertiseIp] : [],
      labels: this.config.labels,
      warn: this.options.warn,
    })
    saveIdentity(this.config.dataDir, identity)
    this.log.info(`joined cluster "${identity.clusterName}" as ${identity.nodename}`, { host_id: identity.hostId })
    return identity
  }
}
