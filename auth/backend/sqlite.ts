// The embedded backend: one SQLite file through Node's built-in driver, so no native addon
// has to ship inside the single executable.
import { closeSync, constants, existsSync, fchmodSync, fstatSync, mkdirSync, openSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import type { Backend, Condition, Item, Operation, PutOptions } from './backend.ts'

export interface SqliteBackendOptions {
  /** Epoch milliseconds; injectable so tests can move time without waiting. */
  clock?: () => number
  /** How often expired rows are removed from disk. Reads ignore them either way. */
  purgeIntervalMs?: number
}

interface Row {
  key: string
  value: string
  revision: number
  expires: number | null
}

// Another process (or a second handle) holding the write lock makes us wait this long
// before failing with SQLITE_BUSY.
const BUSY_TIMEOUT_MS = 5000
const DEFAULT_PURGE_INTERVAL_MS = 60_000

// The revision counter lives in its own row rather than being derived from MAX(revision):
// a deleted key's revision must never be handed out again.
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    revision INTEGER NOT NULL,
    expires INTEGER
  );
  CREATE INDEX IF NOT EXISTS items_by_expiry ON items (expires) WHERE expires IS NOT NULL;
  CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
  );
  INSERT OR IGNORE INTO counters (name, value) VALUES ('revision', 0);
`

export class SqliteBackend implements Backend {
  readonly path: string
  #db: DatabaseSync | undefined
  #statements = new Map<string, StatementSync>()
  #clock: () => number
  #purgeTimer: NodeJS.Timeout
  #pending: { work: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }[] = []

  static open(path: string, options: SqliteBackendOptions = {}): SqliteBackend {
    let db: DatabaseSync | undefined
    try {
      createPrivateFile(path)
      db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS })
      configure(db)
    } catch (cause) {
      db?.close()
      throw new Error(`cannot open SQLite backend at ${path}: ${errorMessage(cause)}`, { cause })
    }
    return new SqliteBackend(db, path, options)
  }

  private constructor(db: DatabaseSync, path: string, options: SqliteBackendOptions) {
    this.#db = db
    this.path = path
    this.#clock = options.clock ?? Date.now
    this.#purgeTimer = setInterval(() => this.#purgeQuietly(), options.purgeIntervalMs ?? DEFAULT_PURGE_INTERVAL_MS)
    // Housekeeping must never keep the process alive.
    this.#purgeTimer.unref()
  }

  async get(key: string): Promise<Item | undefined> {
    const row = this.#row(key)
    if (row === undefined) return undefined
    const now = this.#clock()
    if (isLive(row, now)) return toItem(row)
    this.#purgeKeyQuietly(key, now)
    return undefined
  }

  async list(prefix: string): Promise<Item[]> {
    const now = this.#clock()
    const upper = prefixUpperBound(prefix)
    const live = '(expires IS NULL OR expires > :now)'
    const rows =
      upper === undefined
        ? this.#sql(`SELECT * FROM items WHERE key >= :prefix AND ${live} ORDER BY key`).all({ prefix, now })
        : this.#sql(`SELECT * FROM items WHERE key >= :prefix AND key < :upper AND ${live} ORDER BY key`).all({ prefix, upper, now })
    return (rows as unknown as Row[]).map(toItem)
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<number> {
    const expires = expiryFor(this.#clock(), options.ttlMs)
    return this.#commit(() => this.#write(key, value, expires))
  }

  async create(key: string, value: string, options: PutOptions = {}): Promise<boolean> {
    const now = this.#clock()
    const expires = expiryFor(now, options.ttlMs)
    return this.#commit(() => {
      if (this.#liveRow(key, now) !== undefined) return false
      this.#write(key, value, expires)
      return true
    })
  }

  async delete(key: string): Promise<boolean> {
    const now = this.#clock()
    return this.#commit(() => {
      // An expired row is removed too, but reported as absent: callers never saw it.
      const removed = this.#sql('DELETE FROM items WHERE key = ? RETURNING expires').get(key) as Pick<Row, 'expires'> | undefined
      return removed !== undefined && isLive(removed, now)
    })
  }

  async txn(conditions: Condition[], operations: Operation[]): Promise<boolean> {
    const now = this.#clock()
    // Validate every TTL up front so a bad operation cannot leave half a transaction behind.
    const writes = operations.map((op) => (op.op === 'put' ? { ...op, expires: expiryFor(now, op.ttlMs) } : op))
    return this.#commit(() => {
      if (!conditions.every((condition) => this.#holds(condition, now))) return false
      for (const write of writes) {
        if (write.op === 'put') this.#write(write.key, write.value, write.expires)
        else this.#sql('DELETE FROM items WHERE key = ?').run(write.key)
      }
      return true
    })
  }

  /** Removes every expired row from disk and returns how many went. */
  async purgeExpired(): Promise<number> {
    const now = this.#clock()
    return this.#transaction(() => Number(this.#sql('DELETE FROM items WHERE expires <= ?').run(now).changes))
  }

  async close(): Promise<void> {
    clearInterval(this.#purgeTimer)
    if (this.#db !== undefined) this.#flush()
    const db = this.#db
    this.#db = undefined
    this.#statements.clear()
    db?.close()
  }

  #openDb(): DatabaseSync {
    if (this.#db === undefined) throw new Error(`SQLite backend at ${this.path} is closed`)
    return this.#db
  }

  // Prepared once per handle: preparing costs more than running these small statements.
  #sql(sql: string): StatementSync {
    const db = this.#openDb()
    let statement = this.#statements.get(sql)
    if (statement === undefined) {
      statement = db.prepare(sql)
      this.#statements.set(sql, statement)
    }
    return statement
  }

  #row(key: string): Row | undefined {
    return this.#sql('SELECT * FROM items WHERE key = ?').get(key) as Row | undefined
  }

  #liveRow(key: string, now: number): Row | undefined {
    const row = this.#row(key)
    return row !== undefined && isLive(row, now) ? row : undefined
  }

  #holds(condition: Condition, now: number): boolean {
    const row = this.#liveRow(condition.key, now)
    if ('absent' in condition) return row === undefined
    return row !== undefined && row.revision === condition.revision
  }

  // Must run inside #transaction: the counter bump and the row write commit together.
  #write(key: string, value: string, expires: number | null): number {
    const bump = this.#sql("UPDATE counters SET value = value + 1 WHERE name = 'revision' RETURNING value")
    const { value: revision } = bump.get() as { value: number }
    this.#sql(`
      INSERT INTO items (key, value, revision, expires) VALUES (?, ?, ?, ?)
      ON CONFLICT (key) DO UPDATE
        SET value = excluded.value, revision = excluded.revision, expires = excluded.expires
    `).run(key, value, revision, expires)
    return revision
  }

  /**
   * Group commit: writes requested during one turn of the event loop share one transaction,
   * and so one fsync; each caller's promise settles only after that commit is durable. Each
   * write runs in its own savepoint, so one that throws is undone alone.
   */
  #commit<T>(work: () => T): Promise<T> {
    this.#openDb()
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ work, resolve: resolve as (value: unknown) => void, reject })
      if (this.#pending.length === 1) setImmediate(() => this.#flush())
    })
  }

  #flush(): void {
    const batch = this.#pending
    this.#pending = []
    if (batch.length === 0) return
    const outcomes: { ok: boolean; value: unknown }[] = []
    try {
      this.#transaction(() => {
        const db = this.#openDb()
        for (const { work } of batch) {
          db.exec('SAVEPOINT write')
          try {
            outcomes.push({ ok: true, value: work() })
            db.exec('RELEASE write')
          } catch (error) {
            db.exec('ROLLBACK TO write')
            db.exec('RELEASE write')
            outcomes.push({ ok: false, value: error })
          }
        }
      })
    } catch (error) {
      for (const { reject } of batch) reject(error)
      return
    }
    batch.forEach(({ resolve, reject }, i) => {
      if (outcomes[i].ok) resolve(outcomes[i].value)
      else reject(outcomes[i].value)
    })
  }

  #transaction<T>(work: () => T): T {
    return immediateTransaction(this.#openDb(), work)
  }

  // Best effort: a read must not fail because the cleanup it opportunistically does failed.
  #purgeKeyQuietly(key: string, now: number): void {
    try {
      this.#transaction(() => {
        this.#sql('DELETE FROM items WHERE key = ? AND expires <= ?').run(key, now)
      })
    } catch {
      // The periodic purge will get it.
    }
  }

  #purgeQuietly(): void {
    // A busy database or a closed handle just means trying again on the next tick.
    this.purgeExpired().catch(() => {})
  }
}

/**
 * SQLite would create the file world-readable; create it first so it never is. It holds the
 * CAs' private keys: an existing one must be a file of the running user's (not a link, which
 * would be followed to wherever it points, nor a file another user made ready to read them
 * from), and only its owner may read it.
 */
function createPrivateFile(path: string): void {
  makeDirectories(dirname(path), 0o700)
  let fd: number
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') throw new Error(`${path} is a symbolic link; give the database's own path`)
    throw error
  }
  try {
    const stats = fstatSync(fd)
    if (!stats.isFile()) throw new Error(`${path} is not a regular file`)
    const me = process.getuid?.()
    if (me !== undefined && stats.uid !== me)
      throw new Error(
        `${path} belongs to uid ${stats.uid}, not to uid ${me} who runs this: its owner could read the CAs' private keys; remove it, or restore the backend from a backup`,
      )
    fchmodSync(fd, 0o600)
  } finally {
    closeSync(fd)
  }
}

// Not mkdirSync's recursive option: in Node 24 it spins forever when a parent exists but
// cannot hold children (a path under /proc, a dangling symlink).
function makeDirectories(dir: string, mode: number): void {
  const missing: string[] = []
  for (let current = resolve(dir); !existsSync(current); current = dirname(current)) {
    missing.unshift(current)
    if (dirname(current) === current) break
  }
  for (const directory of missing) {
    try {
      mkdirSync(directory, { mode })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      // Someone else created it meanwhile (fine), or something that is not a directory
      // is in the way: mkdir's EEXIST would read like success, so say what is wrong.
      if (!statSync(directory, { throwIfNoEntry: false })?.isDirectory()) {
        throw new Error(`${directory} exists but is not a directory`, { cause: error })
      }
    }
  }
}

function configure(db: DatabaseSync): void {
  const { journal_mode: mode } = db.prepare('PRAGMA journal_mode = WAL').get() as {
    journal_mode: string
  }
  if (mode !== 'wal') throw new Error(`could not enable WAL journaling (got ${mode})`)
  // FULL syncs the WAL on every commit, so an acknowledged write survives power loss too.
  db.exec('PRAGMA synchronous = FULL')
  immediateTransaction(db, () => db.exec(SCHEMA))
}

// IMMEDIATE takes the write lock before reading, so the checks and the writes that
// depend on them cannot interleave with another connection's transaction.
function immediateTransaction<T>(db: DatabaseSync, work: () => T): T {
  db.exec('BEGIN IMMEDIATE')
  try {
    const result = work()
    db.exec('COMMIT')
    return result
  } catch (error) {
    if (db.isTransaction) db.exec('ROLLBACK')
    throw error
  }
}

function isLive(row: Pick<Row, 'expires'>, now: number): boolean {
  return row.expires === null || row.expires > now
}

function expiryFor(now: number, ttlMs: number | undefined): number | null {
  if (ttlMs === undefined) return null
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`ttlMs must be a positive number of milliseconds, got ${ttlMs}`)
  }
  return Math.ceil(now + ttlMs)
}

function toItem(row: Row): Item {
  const item: Item = { key: row.key, value: row.value, revision: row.revision }
  if (row.expires !== null) item.expires = row.expires
  return item
}

/**
 * The smallest string above every string that starts with `prefix`, or undefined when there
 * is none. Used instead of LIKE so that '%' and '_' in a prefix are plain characters.
 * SQLite compares TEXT as UTF-8 bytes, i.e. by code point, so bumping the last code point
 * gives an exact bound (and keys beyond U+FFFF still fall inside it).
 */
export function prefixUpperBound(prefix: string): string | undefined {
  const codePoints = Array.from(prefix, (char) => char.codePointAt(0) as number)
  while (codePoints.length > 0) {
    const last = codePoints.pop() as number
    if (last < 0x10ffff) {
      const next = last + 1
      const encodable = next >= 0xd800 && next <= 0xdfff ? 0xe000 : next
      return String.fromCodePoint(...codePoints, encodable)
    }
  }
  return undefined
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
