// What `warren start` serves on its status socket: the process, and a section for each
// role once it is up (each role builds its own: auth/status.ts, proxy/status.ts,
// agent/status.ts). Opened once the data dir is locked, closed (and its socket removed)
// when the process stops.

import { youngGenerationBytes } from '../shared/heap-tuning.ts'
import type { Logger } from '../shared/log.ts'
import { statusTime, type WarrenStatus } from '../shared/status.ts'
import { StatusSocket, statusSocketPath } from '../shared/status-socket.ts'
import { VERSION } from '../shared/version.ts'

type Section = 'auth' | 'proxy' | 'node'

export class StatusEndpoint {
  private readonly process: Omit<WarrenStatus['process'], 'young_generation_bytes'>
  private readonly sections = new Map<Section, () => unknown>()
  private socket?: StatusSocket

  constructor(dataDir: string, roles: string[], freshImage: boolean) {
    this.process = {
      pid: process.pid,
      version: VERSION,
      roles,
      data_dir: dataDir,
      started: statusTime(Date.now() - process.uptime() * 1000),
      fresh_image: freshImage,
      last_reload: null,
    }
  }

  /** Serves the socket; a failure is logged, never fatal: the roles matter more than their report. */
  async open(log: Logger): Promise<void> {
    try {
      this.socket = await StatusSocket.listen(statusSocketPath(this.process.data_dir), () => this.build())
    } catch (error) {
      log.warn(`${(error as Error).message}; "warren status" cannot read this process`)
    }
  }

  /** A role that is up: its section is built by `build` at each request. */
  add(section: Section, build: () => unknown): void {
    this.sections.set(section, build)
  }

  /** A SIGHUP's outcome: applied, or the reason it was not. */
  reloaded(error?: Error, notApplied: string[] = []): void {
    this.process.last_reload = {
      time: statusTime(Date.now()),
      ok: !error,
      ...(error ? { error: error.message } : {}),
      ...(notApplied.length > 0 ? { not_applied: notApplied } : {}),
    }
  }

  build(): WarrenStatus {
    const status: Record<string, unknown> = { process: { ...this.process, young_generation_bytes: youngGenerationBytes() } }
    for (const [section, build] of this.sections) {
      const built = build()
      if (built !== undefined) status[section] = built
    }
    return status as unknown as WarrenStatus
  }

  async close(): Promise<void> {
    await this.socket?.close()
  }
}
