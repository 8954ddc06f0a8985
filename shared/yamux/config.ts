// Every tunable of a yamux session, its default and the reason for it. Sessions take a
// partial Config; `resolveConfig` fills in the rest and refuses values that cannot work.

import { INITIAL_STREAM_WINDOW, MAX_WINDOW, YamuxError } from './const.ts'

export interface Config {
  /**
   * Incoming streams that may wait while the session has no 'stream' listener (for example
   * between creating the session and attaching the handler). Beyond this, new streams are
   * reset. Streams are handed to a listener as soon as one exists, so with a listener the
   * backlog stays empty. Default 256, like hashicorp/yamux.
   */
  acceptBacklog: number

  /**
   * Streams the peer may hold open at once (those it opened and that are not yet closed on
   * both sides, or reset). A SYN beyond this is answered with RST, so a peer cannot make us
   * keep thousands of streams and the work each one starts. Default 256, hashicorp/yamux's
   * accept backlog; room for as many users at once as one tunnel to a device needs.
   */
  maxIncomingStreams: number

  /**
   * Received bytes that all the session's streams together may hold unread. Each stream
   * holds at most its window, but a peer that fills the window of every stream it may open
   * (256 KiB each from the SYN on) would hold 64 MiB at the default stream count. Windows
   * grow only within this, so streams whose readers stall reach it only when more than 128
   * of them hold a first window each; past it, the stream holding the most unread bytes is
   * reset (RST) until the new data fits, and memory stays bounded. Default 32 MiB: twice
   * maxStreamWindowSize, so two streams at their largest windows fit.
   */
  maxSessionReceiveBuffer: number

  /**
   * Send a ping every `keepAliveIntervalMs`. Besides measuring the round trip (which the
   * window auto-tuning uses), it keeps NAT and load-balancer flow state alive and notices
   * a dead peer when the network drops packets silently (no FIN, no RST). Default on.
   */
  enableKeepAlive: boolean

  /**
   * Keepalive period. When nothing at all has arrived from the peer during one full
   * interval after a keepalive ping was sent, the session is closed, so a dead peer is
   * noticed within two intervals. 15 s, well under the idle timeouts of common NATs
   * (30 s and up) and far under Teleport's 5 min keepalive / 15 min death.
   */
  keepAliveIntervalMs: number

  /**
   * Leave keepalive pings to the peer while the session is idle: with no stream open, a
   * ping goes out only after an interval in which nothing arrived. A proxy holding
   * thousands of idle tunnels whose agents ping every interval then sends no pings of its
   * own, which halves the keepalive traffic, and still notices a silent peer within three
   * intervals. With streams open it pings every interval, which keeps the round-trip time
   * that window auto-tuning uses fresh. Default off.
   */
  keepAliveWhenQuietOnly: boolean

  /**
   * How long the connection may refuse to take our bytes (its write buffer stays full)
   * before the session is closed, and how long `ping()` waits for its answer. A safety
   * valve for a peer that stopped reading. Default 10 s, like hashicorp/yamux.
   */
  connectionWriteTimeoutMs: number

  /**
   * The receive window each stream starts with. The spec fixes 256 KiB as the window both
   * sides assume; a larger value is announced in the SYN/ACK window update.
   */
  initialStreamWindow: number

  /**
   * The largest receive window a stream may grow to. Windows start at
   * `initialStreamWindow` and double while the reader keeps up with a full window per
   * couple of round trips, so one stream is not capped at 256 KiB per round trip on long
   * paths; the cap bounds the memory one unread stream can hold. Default 16 MiB.
   */
  maxStreamWindowSize: number
}

export const defaultConfig: Readonly<Config> = Object.freeze({
  acceptBacklog: 256,
  maxIncomingStreams: 256,
  maxSessionReceiveBuffer: 32 * 1024 * 1024,
  enableKeepAlive: true,
  keepAliveIntervalMs: 15_000,
  keepAliveWhenQuietOnly: false,
  connectionWriteTimeoutMs: 10_000,
  initialStreamWindow: INITIAL_STREAM_WINDOW,
  maxStreamWindowSize: 16 * 1024 * 1024,
})

/** Throws a YamuxError (ERR_YAMUX_INVALID_CONFIG) naming the first unusable setting. */
export function verifyConfig(config: Config): void {
  const bad = (detail: string): never => {
    throw new YamuxError('ERR_YAMUX_INVALID_CONFIG', detail)
  }
  if (!Number.isSafeInteger(config.acceptBacklog) || config.acceptBacklog <= 0) {
    bad('acceptBacklog must be a positive integer')
  }
  if (!Number.isSafeInteger(config.maxIncomingStreams) || config.maxIncomingStreams <= 0) {
    bad('maxIncomingStreams must be a positive integer')
  }
  if (typeof config.enableKeepAlive !== 'boolean') bad('enableKeepAlive must be a boolean')
  if (typeof config.keepAliveWhenQuietOnly !== 'boolean') bad('keepAliveWhenQuietOnly must be a boolean')
  if (!(config.keepAliveIntervalMs > 0) || !Number.isFinite(config.keepAliveIntervalMs)) {
    bad('keepAliveIntervalMs must be a positive number')
  }
  if (!(config.connectionWriteTimeoutMs > 0) || !Number.isFinite(config.connectionWriteTimeoutMs)) {
    bad('connectionWriteTimeoutMs must be a positive number')
  }
  if (!Number.isSafeInteger(config.initialStreamWindow) || config.initialStreamWindow < INITIAL_STREAM_WINDOW) {
    bad(`initialStreamWindow must be an integer of at least ${INITIAL_STREAM_WINDOW} (fixed by the spec)`)
  }
  if (!Number.isSafeInteger(config.maxStreamWindowSize) || config.maxStreamWindowSize > MAX_WINDOW) {
    bad(`maxStreamWindowSize must be an integer of at most ${MAX_WINDOW}`)
  }
  if (config.maxStreamWindowSize < config.initialStreamWindow) {
    bad('maxStreamWindowSize must be at least initialStreamWindow')
  }
  if (!Number.isSafeInteger(config.maxSessionReceiveBuffer) || config.maxSessionReceiveBuffer < config.maxStreamWindowSize) {
    bad('maxSessionReceiveBuffer must be an integer of at least maxStreamWindowSize')
  }
}

/** Defaults overlaid with the given settings, verified. */
export function resolveConfig(partial: Partial<Config> = {}): Readonly<Config> {
  const config: Config = { ...defaultConfig }
  for (const key of Object.keys(defaultConfig) as (keyof Config)[]) {
    if (partial[key] !== undefined) (config as unknown as Record<string, unknown>)[key] = partial[key]
  }
  verifyConfig(config)
  return Object.freeze(config)
}
