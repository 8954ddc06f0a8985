// An auth server creates its cluster's CAs in a backend that holds none. A backend that holds
// none is also what a changed storage setting shows (SQLite moved to etcd, another etcd
// prefix, another SQLite path), or a backend lost with its disk: creating CAs there would make
// a new cluster under the same name, with a new CA pin that no node, proxy or user holds, and
// the fleet would be cut off without a word. So the data dir remembers the cluster its auth
// server served (MARKER_FILE, written at every start where it is missing or out of date), and
// a start that finds an empty backend while the data dir shows a cluster refuses to create
// one. Data dirs from before the marker show it by their admin identity, or by an SQLite
// backend left in the data dir when the storage setting names another.

import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { WarrenError } from '../shared/errors.ts'
import { writeFileAtomic } from '../shared/files.ts'
import type { Logger } from '../shared/log.ts'
import { adminIdentityPath } from './admin-identity.ts'
import { authorityKey } from './authorities.ts'
import type { Backend, BackendConfig } from './backend/index.ts'

/** In the data dir: the cluster this auth server belongs to, its name and CA pin. */
export const MARKER_FILE = 'cluster.json'
/** The default SQLite file in the data dir (DEFAULTS.storageFile). */
const SQLITE_FILE = 'backend.db'

interface Marker {
  cluster_name: string
  ca_pin: string
}

/**
 * Throws, before anything is written into the backend, when it holds no CAs while the data dir
 * shows that this auth server belonged to a cluster: the error names what was found and how
 * to go on.
 */
export async function refuseForgottenCluster(backend: Backend, dataDir: string, storage: BackendConfig): Promise<void> {
  if (await backend.get(authorityKey('host'))) return
  const found: { path: string; what: string }[] = []
  const marker = join(dataDir, MARKER_FILE)
  const remembered = readJson(marker) as Partial<Marker> | undefined
  if (existsSync(marker)) found.push({ path: marker, what: `records cluster ${remembered?.cluster_name ?? '?'} (CA pin ${remembered?.ca_pin ?? '?'})` })
  const identity = adminIdentityPath(dataDir)
  if (existsSync(identity))
    found.push({ path: identity, what: `warrenctl's admin identity of cluster ${(readJson(identity) as { cluster_name?: string } | undefined)?.cluster_name ?? '?'}` })
  const sqlite = join(dataDir, SQLITE_FILE)
  if ((storage.type !== 'sqlite' || !sameFile(storage.path, sqlite)) && (statSync(sqlite, { throwIfNoEntry: false })?.size ?? 0) > 0)
    found.push({ path: sqlite, what: 'an SQLite backend' })
  if (found.length === 0) return
  throw new WarrenError(
    `the backend (${describe(storage)}) holds no cluster, but data dir ${dataDir} shows that this auth server belonged to one: ${found.map((f) => `${f.path}: ${f.what}`).join('; ')}. ` +
      'Creating new CAs would make a new cluster that no node, proxy or user trusts. Point auth_service.storage at the backend of that cluster, or restore it from a backup ' +
      `(warrenctl restore for SQLite, etcdutl snapshot restore for etcd); to start a new cluster on purpose, move ${found.map((f) => f.path).join(' and ')} out of the way`,
  )
}

/** Records the cluster in the data dir where it is missing or out of date (a rotation changes the pin); a failure is only logged. */
export function rememberCluster(dataDir: string, clusterName: string, pin: string, log: Logger): void {
  const path = join(dataDir, MARKER_FILE)
  const current = readJson(path) as Partial<Marker> | undefined
  if (current?.cluster_name === clusterName && current.ca_pin === pin) return
  const marker: Marker = { cluster_name: clusterName, ca_pin: pin }
  try {
    writeFileAtomic(path, `${JSON.stringify(marker, null, 2)}\n`)
  } catch (error) {
    log.warn(`could not record the cluster in the data dir: ${(error as Error).message}`, { path })
  }
}

/**
 * Whether two paths name one file, however spelt (`data//backend.db`, a symlinked directory,
 * a relative path): the same device and inode, or, for a file not there yet, the same real
 * directory and name.
 */
export function sameFile(a: string, b: string): boolean {
  const [first, second] = [statSync(a, { throwIfNoEntry: false }), statSync(b, { throwIfNoEntry: false })]
  if (first || second) return first !== undefined && second !== undefined && first.dev === second.dev && first.ino === second.ino
  return realPath(a) === realPath(b)
}

/** The path with its directory's symlinks resolved, as far as that directory exists. */
function realPath(path: string): string {
  const absolute = resolve(path)
  const parent = dirname(absolute)
  if (parent === absolute) return absolute
  try {
    return join(realpathSync(parent), basename(absolute))
  } catch {
    return join(realPath(parent), basename(absolute))
  }
}

function describe(storage: BackendConfig): string {
  return storage.type === 'sqlite' ? `SQLite ${storage.path}` : `etcd ${storage.peers.join(',')}, prefix ${storage.prefix}`
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch {
    return undefined
  }
}
