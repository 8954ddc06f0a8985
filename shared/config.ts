// Warren's configuration: one YAML file holds every role's sections (like Teleport's
// teleport.yaml) and command-line flags override it. Each key, its default and what it does
// are declared once, in config-schema.ts; yaml-schema/ reads a file against them, so that
// every mistake is reported with the key's path and line instead of surfacing later as a
// confusing failure.

import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { isatty } from 'node:tty'
import { splitHostPort } from './address.ts'
import { addressWithPortProblem, CONFIG_SCHEMA, DEFAULTS, type WarrenConfig } from './config-schema.ts'
import { ConfigError, UsageError } from './errors.ts'
import { checkFlagLabels } from './labels.ts'
import { parsePin } from './pin.ts'
import { readDefaults, readDocument } from './yaml-schema/index.ts'

export {
  type AcmeConfig,
  type AuthConfig,
  DEFAULTS,
  type ForwardPort,
  MIN_CERT_TTL_MS,
  MIN_TOKEN_LENGTH,
  type PortForwarding,
  type ProxyConfig,
  type SshConfig,
  type StorageConfig,
  type WarrenConfig,
} from './config-schema.ts'

export function loadConfigFile(path: string): WarrenConfig {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${fileProblem(err)}`)
  }
  return parseConfig(text, path)
}

export function parseConfig(text: string, sourceName: string): WarrenConfig {
  const config = readDocument(CONFIG_SCHEMA, text, sourceName)
  const problem = recordingDirProblem(config)
  if (problem) throw new ConfigError(`${sourceName}: ${problem}`)
  return config
}

/** The node's outbox: its finished session recordings until the auth server has them (agent/node-recordings.ts). */
export function nodeRecordingsDir(dataDir: string): string {
  return join(dataDir, 'node-recordings')
}

/**
 * The auth store may not keep its recordings in the node's outbox: the node's uploader
 * takes every recording there for its own, and deletes what the store holds whole.
 */
function recordingDirProblem(config: WarrenConfig): string | undefined {
  const dir = config.auth.recordingDir
  if (dir === undefined || resolve(dir) !== resolve(nodeRecordingsDir(config.dataDir))) return undefined
  return (
    `auth_service.recording_dir ${dir} is the node's own folder of recordings waiting to upload ` +
    `(node-recordings in data_dir ${config.dataDir}): choose another folder, such as ${join(config.dataDir, 'recordings')}`
  )
}

/** The config of a file that writes nothing: every key at its default. */
export function defaultConfig(): WarrenConfig {
  return readDefaults(CONFIG_SCHEMA)
}

// `--labels=k=v,..`; the rules of labels live with the labels.
export { parseLabels } from './labels.ts'

/**
 * The token itself: a value starting with `/` names a file holding it, and `-` means
 * standard input (surrounding whitespace dropped), so that the token need not be on a
 * command line, where any local user can read it. Errors name the file, never the token.
 */
export function resolveTokenValue(value: string): string {
  if (value === '-') {
    const token = readStandardInput().trim()
    if (token === '') throw new ConfigError('no join token on standard input (--token=-)')
    return token
  }
  if (!value.startsWith('/')) {
    if (value.trim() === '') throw new ConfigError('the join token is empty')
    return value
  }
  let content: string
  try {
    content = readFileSync(value, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read token file ${value}: ${fileProblem(err)}`)
  }
  const token = content.trim()
  if (token === '') throw new ConfigError(`token file ${value} is empty`)
  return token
}

let standardInput: string | undefined

/** Standard input to its end, read once: every role of a process may ask for `--token=-`. */
function readStandardInput(): string {
  if (standardInput !== undefined) return standardInput
  // A terminal would wait for an end of file that nobody knows to type.
  if (isatty(0)) throw new ConfigError('--token=- reads the join token from standard input, which is a terminal: pipe the token in, or give a file path')
  try {
    standardInput = readFileSync(0, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read the join token from standard input: ${fileProblem(err)}`)
  }
  return standardInput
}

function fileProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return 'no such file'
  if (code === 'EACCES') return 'permission denied'
  if (code === 'EISDIR') return 'it is a directory'
  return err instanceof Error ? err.message : String(err)
}

// ---------------------------------------------------------------------------------------
// Flags over the file

export interface ConfigFlags {
  dataDir?: string
  nodename?: string
  token?: string
  authServer?: string[]
  caPin?: string[]
  labels?: Record<string, string>
  diagAddr?: string
}

/**
 * A copy of `config` with the command line's values in place of the file's. Labels are
 * merged, the flag's value winning per key. Values that followed a default (the storage
 * path under the data dir, the cluster name from the nodename) follow the new value.
 */
export function applyFlags(config: WarrenConfig, flags: ConfigFlags): WarrenConfig {
  const next = structuredClone(config)
  if (flags.dataDir !== undefined) {
    if (flags.dataDir.trim() === '') throw new UsageError('--data-dir needs a directory')
    // Relative to the working directory of this start, as the shell means it: the data dir
    // and the SQLite file in it are then the same wherever the process looks at them later.
    const dataDir = resolve(flags.dataDir)
    const storage = next.auth.storage
    if (storage.type === 'sqlite' && storage.path === join(config.dataDir, DEFAULTS.storageFile)) {
      storage.path = join(dataDir, DEFAULTS.storageFile)
    }
    next.dataDir = dataDir
    const problem = recordingDirProblem(next)
    if (problem) throw new ConfigError(`with --data-dir=${flags.dataDir}: ${problem}`)
  }
  if (flags.nodename !== undefined) {
    if (flags.nodename.trim() === '') throw new UsageError('--nodename needs a name')
    if (next.auth.clusterName === config.nodename) next.auth.clusterName = flags.nodename
    next.nodename = flags.nodename
  }
  if (flags.token !== undefined) next.authToken = flags.token
  if (flags.diagAddr !== undefined) {
    const problem = addressWithPortProblem(flags.diagAddr)
    if (problem) throw new UsageError(`--diag-addr ${problem}`)
    next.diagAddr = flags.diagAddr
  }
  if (flags.authServer && flags.authServer.length > 0) {
    // A node joins and renews through one address, as auth_servers takes one.
    if (flags.authServer.length > 1) throw new UsageError(`--auth-server takes one address, not ${flags.authServer.length}`)
    for (const server of flags.authServer) splitHostPort(server)
    next.authServers = [...flags.authServer]
  }
  if (flags.caPin && flags.caPin.length > 0) next.caPins = flags.caPin.map(parsePin)
  if (flags.labels) next.labels = checkFlagLabels({ ...next.labels, ...flags.labels })
  return next
}
