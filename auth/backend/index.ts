// Picks the storage backend named in the auth server's configuration.
import type { Backend } from './backend.ts'
import type { EtcdBackend, EtcdTlsOptions } from './etcd.ts'
import { SqliteBackend } from './sqlite.ts'

export type { Backend, Condition, Item, Operation, PutOptions } from './backend.ts'

export interface SqliteBackendConfig {
  type: 'sqlite'
  /** Database file; its directory is created (mode 0700) if missing. */
  path: string
}

export interface EtcdBackendConfig {
  type: 'etcd'
  /**
   * etcd client URLs; a bare host:port gets https:// when `tls` is given or another peer is
   * https://, else http://. A peer not on loopback needs TLS unless `insecurePlaintext`.
   */
  peers: string[]
  /** Every key lives under this prefix (for example "/warren/"); prefixes must not nest. */
  prefix: string
  tls?: EtcdTlsOptions
  /** Peers not on loopback may be reached without TLS: what is stored crosses the network readable. */
  insecurePlaintext?: boolean
}

export type BackendConfig = SqliteBackendConfig | EtcdBackendConfig

/** How the auth server reaches its store: an etcd peer off this host without TLS must be visible. */
export type StorageTransport = { type: 'sqlite' } | { type: 'etcd'; tls: boolean; plaintextPeers: string[] }

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

/** For a backend that openBackend opened. */
export function storageTransport(backend: Backend): StorageTransport {
  if (backend instanceof SqliteBackend) return { type: 'sqlite' }
  const etcd = backend as EtcdBackend
  return { type: 'etcd', tls: etcd.tls, plaintextPeers: [...etcd.plaintextPeers] }
}
