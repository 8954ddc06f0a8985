// The storage contract every auth component uses. Keys are '/'-separated paths; values are
// strings (JSON by convention). Implementations: SQLite (embedded, default) and etcd (HA).
// Every write resolves only after it is durable, so an acknowledged write survives a crash.

export interface Item {
  key: string
  value: string
  /** Increases on every write of this key; compare it in txn() to detect concurrent changes. */
  revision: number
  /** Epoch milliseconds after which the item is gone; undefined for items that never expire. */
  expires?: number
}

export interface PutOptions {
  /** Lifetime in milliseconds; the item disappears (reads no longer see it) once it passes. */
  ttlMs?: number
}

/** A condition for txn(): the key's current revision equals `revision`, or the key is absent. */
export type Condition = { key: string; revision: number } | { key: string; absent: true }

export type Operation = { op: 'put'; key: string; value: string; ttlMs?: number } | { op: 'delete'; key: string }

export interface Backend {
  get(key: string): Promise<Item | undefined>
  /** Every live item whose key starts with `prefix`, ordered by key. */
  list(prefix: string): Promise<Item[]>
  /** Writes unconditionally and returns the new revision. */
  put(key: string, value: string, options?: PutOptions): Promise<number>
  /** Writes only if the key is absent (or expired); false when it already exists. */
  create(key: string, value: string, options?: PutOptions): Promise<boolean>
  /** Removes the key; false when it was absent. */
  delete(key: string): Promise<boolean>
  /**
   * Atomically applies `operations` if every condition holds, otherwise applies nothing.
   * Returns whether the operations were applied. This is the compare-and-swap that keeps
   * single-use tokens single-use across auth servers.
   */
  txn(conditions: Condition[], operations: Operation[]): Promise<boolean>
  close(): Promise<void>
}
