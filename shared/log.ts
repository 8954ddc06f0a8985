// Structured logging for every Warren process: one line per entry on standard error, as text
// for people or JSON for collectors. Secrets are redacted here, at the last step before the
// stream, so that no caller can leak a token by logging the object that carries it.

import { isoTime } from './duration.ts'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogFormat = 'text' | 'json'
export type LogFields = Record<string, unknown>

export interface Logger {
  debug(message: string, fields?: LogFields): void
  info(message: string, fields?: LogFields): void
  warn(message: string, fields?: LogFields): void
  error(message: string, fields?: LogFields): void
  /** A logger for a part of this component (`auth` → `auth:backend`), sharing its settings. */
  child(component: string): Logger
  /** Changes the level for this logger, its parent and all its children. */
  setLevel(level: LogLevel): void
  readonly level: LogLevel
}

export interface LoggerOptions {
  /** Defaults to WARREN_LOG_LEVEL, else info. */
  level?: LogLevel
  /** Defaults to standard error. */
  stream?: NodeJS.WritableStream
  /** Defaults to WARREN_LOG_FORMAT, else text. */
  format?: LogFormat
  /** The clock for timestamps; tests pass a fixed one. */
  now?: () => Date
}

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error']

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 }

/** Field names whose values are never written, at any depth. */
export const SECRET_FIELD = /token|secret|password|passphrase|private_?key/i

export const REDACTED = '[redacted]'

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && value in RANK
}

interface Shared {
  level: LogLevel
  format: LogFormat
  stream: NodeJS.WritableStream
  now: () => Date
}

/** The level WARREN_LOG_LEVEL names, if it names one: the default where nothing else sets it. */
export function logLevelFromEnv(): LogLevel | undefined {
  const level = process.env.WARREN_LOG_LEVEL?.toLowerCase()
  return isLogLevel(level) ? level : undefined
}

/** The format WARREN_LOG_FORMAT names, if it names one: the default where nothing else sets it. */
export function logFormatFromEnv(): LogFormat | undefined {
  const format = process.env.WARREN_LOG_FORMAT?.toLowerCase()
  return format === 'json' || format === 'text' ? format : undefined
}

export function createLogger(component: string, options: LoggerOptions = {}): Logger {
  const shared: Shared = {
    level: options.level ?? logLevelFromEnv() ?? 'info',
    format: options.format ?? logFormatFromEnv() ?? 'text',
    stream: options.stream ?? process.stderr,
    now: options.now ?? (() => new Date()),
  }
  return makeLogger(component, shared)
}

function makeLogger(component: string, shared: Shared): Logger {
  const log = (level: LogLevel) => (message: string, fields?: LogFields) => {
    if (RANK[level] < RANK[shared.level]) return
    const time = isoTime(shared.now().getTime())
    const line = shared.format === 'json' ? jsonLine(time, level, component, message, fields) : textLine(time, level, component, message, fields)
    shared.stream.write(line + '\n')
  }
  return {
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (name) => makeLogger(`${component}:${name}`, shared),
    setLevel: (level) => {
      shared.level = level
    },
    get level() {
      return shared.level
    },
  }
}

/** `2026-11-25T02:30:00.123Z INFO  [auth] message key=value key2="quoted value"` */
function textLine(time: string, level: LogLevel, component: string, message: string, fields?: LogFields): string {
  let line = `${time} ${level.toUpperCase().padEnd(5)} [${component}] ${oneLine(message)}`
  for (const [key, value] of Object.entries(fields ?? {})) {
    line += ` ${key}=${textValue(SECRET_FIELD.test(key) ? REDACTED : redact(value))}`
  }
  return line
}

function jsonLine(time: string, level: LogLevel, component: string, message: string, fields?: LogFields): string {
  const entry: Record<string, unknown> = { time, level, component, msg: message }
  for (const [key, value] of Object.entries(fields ?? {})) {
    // The entry's own keys win so that a field cannot disguise the entry's level or time.
    if (!(key in entry)) entry[key] = SECRET_FIELD.test(key) ? REDACTED : redact(value)
  }
  return JSON.stringify(entry)
}

// A message can carry text from the network; escaping line breaks keeps one entry per line,
// so nobody can forge an entry by sending a newline.
function oneLine(text: string): string {
  return text.replace(/[\r\n]/g, (c) => (c === '\n' ? '\\n' : '\\r'))
}

function textValue(value: unknown): string {
  const text = typeof value === 'string' ? value : stringify(value)
  return text === '' || /[\s"=\\]/.test(text) || /[\x00-\x1f\x7f]/.test(text) ? JSON.stringify(text) : text
}

function stringify(value: unknown): string {
  if (value === undefined) return 'undefined'
  if (typeof value === 'bigint') return value.toString()
  const json = JSON.stringify(value)
  return json === undefined ? String(value) : json
}

/** A copy of `value` safe to write: secret-named keys replaced, errors reduced to messages. */
export function redact(value: unknown, seen = new WeakSet<object>()): unknown {
  if (value instanceof Error) return value.message
  if (value instanceof Date) return isoTime(value.getTime())
  if (typeof value !== 'object' || value === null) return value
  if (seen.has(value)) return '[circular]'
  if (ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`
  // `seen` holds the objects on the current path only, so an object met twice is not circular.
  seen.add(value)
  try {
    if (Array.isArray(value)) return value.map((item) => redact(item, seen))
    if (value instanceof Map) return redact(Object.fromEntries(value), seen)
    if (value instanceof Set) return redact([...value], seen)
    const toJSON = (value as { toJSON?: unknown }).toJSON
    if (typeof toJSON === 'function') return redact(toJSON.call(value), seen)
    const copy: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(value)) {
      copy[key] = SECRET_FIELD.test(key) ? REDACTED : redact(item, seen)
    }
    return copy
  } finally {
    seen.delete(value)
  }
}
