// Every error Warren reports to a person is one of these: the message is meant to be read
// as it is, with no stack trace. `exitCode` follows the convention 2 = bad usage, 1 = failure,
// 3 = refused by the cluster in a way that only an operator can change (a join token refused).

export class WarrenError extends Error {
  readonly exitCode: number = 1
}

/** A call that got no answer from its server: `code` is the network error's (ECONNRESET, ETIMEDOUT, ...), when it had one. */
export class UnreachableError extends WarrenError {
  readonly code?: string

  constructor(message: string, code?: string) {
    super(message)
    this.code = code
  }
}

/** A command line that cannot be understood: unknown flag, malformed value, missing argument. */
export class UsageError extends WarrenError {
  override readonly exitCode: number = 2
}

/** A configuration file that cannot be used; the message names the key and line. */
export class ConfigError extends WarrenError {}

/** A refusal from the other side of an API call (HTTP status and the server's message). */
export class ApiError extends WarrenError {
  readonly status: number
  /** Seconds the server asked the caller to wait before trying again (its Retry-After), when it said. */
  readonly retryAfterS?: number
  /**
   * How far this host's clock was ahead of the server's when the answer came (negative:
   * behind), by the answer's Date header, which counts whole seconds; undefined without one.
   */
  readonly clockAheadMs?: number
  constructor(status: number, message: string, retryAfterS?: number, clockAheadMs?: number) {
    super(message)
    this.status = status
    if (retryAfterS !== undefined) this.retryAfterS = retryAfterS
    if (clockAheadMs !== undefined) this.clockAheadMs = clockAheadMs
  }
}

/**
 * The cluster refused to let this host join (a token expired, used up or unknown, a name
 * taken): starting again changes nothing, so a service manager should not restart it
 * (RestartPreventExitStatus in the systemd units).
 */
export class JoinRefusedError extends ApiError {
  override readonly exitCode: number = 3
}
