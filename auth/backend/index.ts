// Picks the storage backend named in the auth server's configuration.
import type { Backend } from './backend.ts'
import { SqliteBackend } from './sqlite.ts'

export type { Backend, Item, Condition, Operation, PutOptions } from './backend.ts'

export interface SqliteBackendConfig {
  type: 'sqlite'
  /** Database file; its directory is created (mode 0700) if missing. */
  path: string
}

export type BackendConfig = SqliteBackendConfig

export async function openBackend(config: BackendConfig): Promise<Backend> {
  // Configuration comes from a file, so the type may be anything at run time.
  const type: string = config.type
  switch (type) {
    case 'sqlite':
      return SqliteBackend.open(config.path)
    default:
      throw new Error(`unknown storage backend type ${JSON.stringify(type)} (supported: "sqlite")`)
  }
}
