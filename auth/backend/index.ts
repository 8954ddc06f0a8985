// Picks the storage backend named in the auth server's configuration.
import type { Backend } from './backend.ts'
import type { EtcdTlsOptions } from './etcd.ts'
import { SqliteBackend } from './sqlite.ts'

export type { Backend, Condition, Item, Operation, PutOptions } from './backend.ts'

export interface SqliteBackendConfig {
  type: 'sqlite'
  /** Database file; its directory is created (mode 0700) if missing. */
  path: string
}

export interface EtcdBackendConfig {
  type: 'etcd'
  /** etcd client URLs; a bare host:port gets https:// when `tls` is given, else http://. */
  peers: string[]
  /** Every key lives under this prefix (for example "/warren/"); prefixes must not nest. */
  prefix: string
  tls?: EtcdTlsOptions
}

export type BackendConfig = SqliteBackendConfig | EtcdBackendConfig

export async function openBackend(config: BackendConfig): Promise<Backend> {
  // Configuration comes from a file, so the type may be anything at run time.
  const type: string = config.type
  switch (config.type) {
    case 'sqlite':
      return SqliteBackend.open(config.path)
    case 'etcd': {
      // Loaded only when used: the etcd client pulls in gRPC, which SQLite users never need.
      const { EtcdBackend } = await import('./etcd.ts')
      return EtcdBackend.open(config)
    }
    default:
      throw new Error(`unknown storage backend type ${JSON.stringify(type)} (supported: "sqlite", "etcd")`)
  }
}
