// What the gate counts, for operators and tests: connections waiting for their ClientHello,
// handshakes running and queued (gauges), and why connections were closed before a
// handshake (totals since start). Reported as fields of one debug log entry,
// "handshake gate", at most once a second and only when something changed.

import type { Logger } from '../log.ts'

export class GateStats {
  /** Connections accepted whose whole ClientHello has not arrived yet. */
  pendingHello = 0
  /** Closed because their ClientHello was not whole by the deadline. */
  lateHelloClosed = 0
  /** Closed (the oldest first) because their address had too many connections waiting for a ClientHello. */
  helloPerAddressClosed = 0
  /** Closed because what they sent cannot be a ClientHello (or one too large). */
  invalidHelloClosed = 0
  /** Handshakes in progress. */
  handshaking = 0
  /** Connections with a whole ClientHello waiting for a handshake slot. */
  queued = 0
  /** Closed because their address already had its share of the queue. */
  handshakePerAddressRefused = 0
  /** Closed because the queue was full. */
  queueFullClosed = 0
  /** Closed because they waited for a slot longer than the queue wait. */
  queueWaitClosed = 0
  /** Handshakes started for clients resuming a session. */
  resumingStarted = 0
  /** Closed at the accept because their address had too many connections open (`guard` only). */
  openPerAddressClosed = 0

  toJSON(): Record<string, number> {
    return {
      pending_hello: this.pendingHello,
      late_hello_closed: this.lateHelloClosed,
      hello_per_address_closed: this.helloPerAddressClosed,
      invalid_hello_closed: this.invalidHelloClosed,
      handshaking: this.handshaking,
      handshake_queued: this.queued,
      handshake_per_address_refused: this.handshakePerAddressRefused,
      handshake_queue_full_closed: this.queueFullClosed,
      handshake_queue_wait_closed: this.queueWaitClosed,
      resuming_started: this.resumingStarted,
      open_per_address_closed: this.openPerAddressClosed,
    }
  }
}

/** Logs `stats` at debug level every `intervalMs` when it changed; returns the stop function. */
export function reportStats(stats: GateStats, log: Logger, intervalMs = 1000): () => void {
  let last = ''
  const timer = setInterval(() => {
    if (log.level !== 'debug') return
    const fields = stats.toJSON()
    const now = JSON.stringify(fields)
    if (now === last) return
    last = now
    log.debug('handshake gate', fields)
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
