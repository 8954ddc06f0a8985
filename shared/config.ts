// Warren's configuration: one YAML file holds every role's sections (like Teleport's
// teleport.yaml), command-line flags override it, and this module owns every default.
// The file is checked against a declarative schema so that every mistake is reported with
// the key's path and line instead of surfacing later as a confusing failure.

import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { isatty } from 'node:tty'
import { join } from 'node:path'
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml'
import { ConfigError, UsageError } from './errors.ts'
import { splitHostPort } from './address.ts'
import { parseDuration } from './duration.ts'
import { checkFlagLabels, LABEL_LIMITS, labelKeyProblem, labelValueProblem } from './labels.ts'
import { parsePin } from './pin.ts'
import { logFormatFromEnv, logLevelFromEnv, type LogFormat, type LogLevel } from './log.ts'

export const DEFAULTS = {
  dataDir: '/var/lib/warren',
  authListenAddr: '0.0.0.0:3025',
  authPort: 3025,
  webListenAddr: '0.0.0.0:3080',
  webPort: 3080,
  tunnelListenAddr: '0.0.0.0:3024',
  tunnelPort: 3024,
  // A node that joined an auth server directly is dialled by the proxies here (as Teleport's
  // nodes are); a node in tunnel mode listens nowhere.
  sshListenAddr: '0.0.0.0:3022',
  sshPort: 3022,
  // `ssh -L` reaches only the local ports a node declares: a user who may log in to a
  // device should not thereby reach every host on the device's network.
  portForwarding: 'declared',
  heartbeatIntervalMs: 5000,
  heartbeatTtlMs: 30000,
  // Offline nodes stay in `nodes ls --all` this long after their last heartbeat.
  nodeTtlMs: 30 * 24 * 3600_000,
  // Certificate lifetimes (their holders renew them when two thirds have passed), and how
  // long after its certificate expired a device may still prove its key and recover.
  hostCertTtlMs: 30 * 24 * 3600e3,
  adminCertTtlMs: 7 * 24 * 3600e3,
  recoveryWindowMs: 365 * 24 * 3600e3,
  // Far below Teleport's 5 minutes: NATs and load balancers drop flows idle for much less.
  keepaliveIntervalMs: 15000,
  joinRateLimit: { burst: 10, perMinute: 30 },
  nodeTokenTtlMs: 30 * 60e3,
  tokenTtlMs: 60 * 60e3,
  storageFile: 'backend.db',
  etcdPrefix: '/warren/',
  acmeDirectory: 'https://acme-v02.api.letsencrypt.org/directory',
  acmeHttpPort: 80,
  logLevel: 'info',
  logFormat: 'text',
  version: 'v1',
} as const

/** The shortest certificate lifetime the config accepts. */
export const MIN_CERT_TTL_MS = 10_000

/** The fewest characters a join token may have, generated, chosen or static. */
export const MIN_TOKEN_LENGTH = 16

export interface StorageConfig {
  type: 'sqlite' | 'etcd'
  path?: string
  peers?: string[]
  prefix?: string
  tls?: { caFile?: string; certFile?: string; keyFile?: string }
}

export interface AuthConfig {
  enabled: boolean
  listenAddr: string
  publicAddrs: string[]
  /** Defaults to the nodename; see clusterNameOf(). */
  clusterName?: string
  /** Static tokens, `ROLES:VALUE`; a VALUE starting with `/` is a file (resolveTokenValue). */
  tokens: string[]
  storage: StorageConfig
  joinRateLimit: { burst: number; perMinute: number }
  heartbeatTtlMs: number
  /** How long an offline node stays listed (`nodes ls --all`) unless a lock or removal names it. */
  nodeTtlMs: number
  hostCertTtlMs: number
  adminCertTtlMs: number
  /** How long after a host's certificate expired it may still recover it by proving its key. */
  recoveryWindowMs: number
}

export interface ProxyConfig {
  enabled: boolean
  webListenAddr: string
  tunnelListenAddr: string
  publicAddrs: string[]
  tunnelPublicAddrs: string[]
  /** IPs or CIDR ranges whose PROXY protocol headers are believed. */
  trustedLoadBalancers: string[]
  acme: AcmeConfig
}

export interface AcmeConfig {
  enabled: boolean
  email?: string
  /** The ACME directory; Let's Encrypt's when absent. */
  uri?: string
  /** Extra root (PEM file) to trust for the ACME server's own HTTPS: a private or test CA. */
  caFile?: string
  /** A plain HTTP listener (port 80 of the public names) that answers HTTP-01 challenges. */
  httpListenAddr?: string
}

export interface ForwardPort {
  name: string
  addr: string
}

/**
 * Where a user's `ssh -L` may go from the node: only the `forward_ports` it declares (by
 * their host:port), any host:port the node can reach, or nowhere.
 */
export type PortForwarding = 'declared' | 'any' | 'off'

export interface SshConfig {
  /** The node role: on unless `ssh_service.enabled: false`, as in Teleport. */
  enabled: boolean
  /** Where a direct node serves proxies (mutual TLS); unused in tunnel mode. */
  listenAddr: string
  /** The address proxies dial, when not the one the auth server sees with the listen port. */
  publicAddr?: string
  forwardPorts: ForwardPort[]
  portForwarding: PortForwarding
}

export interface WarrenConfig {
  version: string
  dataDir: string
  nodename: string
  /** As written: a value starting with `/` is a file path (resolveTokenValue). */
  authToken?: string
  /** `sha256:<hex>`, lower case. */
  caPins: string[]
  authServers: string[]
  labels: Record<string, string>
  advertiseIp?: string
  log: { level: LogLevel; format: LogFormat }
  keepaliveIntervalMs: number
  auth: AuthConfig
  proxy: ProxyConfig
  ssh: SshConfig
}

// ---------------------------------------------------------------------------------------
// Values shared by the file and the command line

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

/** The cluster's name: `auth_service.cluster_name`, else the nodename. */
export function clusterNameOf(config: WarrenConfig): string {
  return config.auth.clusterName ?? config.nodename
}

// ---------------------------------------------------------------------------------------
// The schema

type Check = (value: string) => string | undefined

type Rule =
  | { kind: 'string'; check?: Check }
  | { kind: 'boolean' }
  | { kind: 'count' }
  | { kind: 'duration'; min?: number }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'list'; item: Rule; single?: boolean; uniqueBy?: string }
  | { kind: 'map'; value: Rule; checkKey?: Check; maxKeys?: number }
  | { kind: 'section'; keys: Record<string, Rule>; required?: string[]; check?: SectionCheck }

/** A rule across a section's keys: the offending key (for its line) and the complaint. */
type SectionCheck = (section: Record<string, any>, path: string) => { key?: string; message: string } | undefined

const string = (check?: Check): Rule => ({ kind: 'string', check })
const boolean: Rule = { kind: 'boolean' }
const count: Rule = { kind: 'count' }
const duration: Rule = { kind: 'duration' }
/**
 * A certificate's lifetime: renewals run at two thirds of it, over the network and with
 * retries, which need a few seconds (tests run several lifetimes of 15 s in real time).
 */
const lifetime: Rule = { kind: 'duration', min: MIN_CERT_TTL_MS }
const oneOf = (...values: string[]): Rule => ({ kind: 'enum', values })
const list = (item: Rule, options: { single?: boolean; uniqueBy?: string } = {}): Rule => ({ kind: 'list', item, ...options })
const section = (keys: Record<string, Rule>, extra: { required?: string[]; check?: SectionCheck } = {}): Rule =>
  ({ kind: 'section', keys, ...extra })

function fromUsage(check: (value: string) => unknown): Check {
  return (value) => {
    try {
      check(value)
      return undefined
    } catch (err) {
      if (err instanceof UsageError) return `is not valid: ${err.message}`
      throw err
    }
  }
}

const address = string(fromUsage(splitHostPort))
const addressWithPort = string((value) => {
  const problem = fromUsage(splitHostPort)(value)
  if (problem) return problem
  return splitHostPort(value).port === undefined ? `must include a port, e.g. 127.0.0.1:8080` : undefined
})
const addresses = list(address, { single: true })
const caPin = string(fromUsage(parsePin))

const ipOrCidr = string((value) => {
  const [ip, bits, extra] = value.split('/')
  const family = isIP(ip)
  const maxBits = family === 6 ? 128 : 32
  const bitsOk = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= maxBits)
  return family === 0 || !bitsOk || extra !== undefined ? 'must be an IP address or a CIDR range, e.g. 10.0.0.0/24' : undefined
})

// ROLES:VALUE. The complaint never repeats the value: it is a secret or names one. A token
// in a file is read (and its length checked) when the auth server starts.
const staticToken = string((value) => {
  const colon = value.indexOf(':')
  const roles = value.slice(0, colon).split(',').map((role) => role.trim())
  const token = value.slice(colon + 1).trim()
  const ok = colon > 0 && token !== '' && roles.every((role) => /^[a-z]+$/.test(role))
  if (!ok) return 'must be ROLES:TOKEN, e.g. "node:/var/lib/warren/node-token" (a token starting with / is a file)'
  if (!token.startsWith('/') && token.length < MIN_TOKEN_LENGTH) {
    return `holds a token shorter than ${MIN_TOKEN_LENGTH} characters, which could be guessed: use a longer one, e.g. from "openssl rand -hex 16"`
  }
  return undefined
})

const portName = string((value) =>
  /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value) ? undefined : 'must be letters, digits, ".", "_" or "-", e.g. webui',
)

const storageCheck: SectionCheck = (storage, path) => {
  if (storage.type === 'etcd') {
    if (!storage.peers || storage.peers.length === 0) return { message: `"${path}.peers" is required for etcd storage` }
    if (storage.path !== undefined) return { key: 'path', message: `"${path}.path" applies only to sqlite storage` }
    return undefined
  }
  for (const key of ['peers', 'prefix', 'tls']) {
    if (storage[key] !== undefined) return { key, message: `"${path}.${key}" applies only to etcd storage` }
  }
  return undefined
}

const SCHEMA = section({
  version: oneOf('v1'),
  data_dir: string(),
  nodename: string(),
  auth_token: string(),
  ca_pin: list(caPin, { single: true }),
  auth_servers: addresses,
  labels: { kind: 'map', value: string(labelValueProblem), checkKey: labelKeyProblem, maxKeys: LABEL_LIMITS.maxLabels },
  log: section({ level: oneOf('debug', 'info', 'warn', 'error'), format: oneOf('text', 'json') }),
  advertise_ip: address,
  keepalive_interval: duration,
  auth_service: section({
    enabled: boolean,
    listen_addr: address,
    public_addr: addresses,
    cluster_name: string(),
    tokens: list(staticToken),
    storage: section(
      {
        type: oneOf('sqlite', 'etcd'),
        path: string(),
        peers: list(string(), { single: true }),
        prefix: string(),
        tls: section({ ca_file: string(), cert_file: string(), key_file: string() }),
      },
      { check: storageCheck },
    ),
    join_rate_limit: section({ burst: count, per_minute: count }),
    heartbeat_ttl: duration,
    node_ttl: duration,
    host_cert_ttl: lifetime,
    admin_cert_ttl: lifetime,
    recovery_window: duration,
  }),
  proxy_service: section({
    enabled: boolean,
    web_listen_addr: address,
    tunnel_listen_addr: address,
    public_addr: addresses,
    tunnel_public_addr: addresses,
    trusted_load_balancers: list(ipOrCidr, { single: true }),
    acme: section({ enabled: boolean, email: string(), uri: string(), ca_file: string(), http_listen_addr: address }),
  }),
  ssh_service: section({
    enabled: boolean,
    listen_addr: address,
    public_addr: addresses,
    forward_ports: list(section({ name: portName, addr: addressWithPort }, { required: ['name', 'addr'] }), {
      uniqueBy: 'name',
    }),
    port_forwarding: oneOf('declared', 'any', 'off'),
  }),
})

// ---------------------------------------------------------------------------------------
// Reading a YAML document against the schema

interface Context {
  source: string
  doc: Document
  lines: LineCounter
}

interface Located {
  range?: [number, number, number] | null
}

function fail(ctx: Context, node: unknown, message: string): never {
  const offset = (node as Located | null)?.range?.[0]
  const where = offset === undefined ? '' : ` line ${ctx.lines.linePos(offset).line}:`
  throw new ConfigError(`${ctx.source}:${where} ${message}`)
}

/**
 * The plain value of `node` checked against `rule`. `at` is the node that introduces it (its
 * key, or the list item itself): blamed for a section's problems, and for a value's when the
 * value has no position of its own (an empty value).
 */
function read(ctx: Context, node: unknown, rule: Rule, path: string, at: unknown): unknown {
  const blame = (node as Located | null)?.range ? node : at
  const sectionBlame = (at as Located | null)?.range ? at : blame
  const target = isAlias(node) ? node.resolve(ctx.doc) : node
  const scalar = isScalar(target) ? target.value : undefined
  const empty = target === null || target === undefined || (isScalar(target) && target.value === null)
  const name = JSON.stringify(path)

  switch (rule.kind) {
    case 'section':
    case 'map': {
      if (empty) return {}
      if (!isMap(target)) fail(ctx, blame, path === '' ? 'the config must be a map of keys such as "auth_service:"' : `${name} must be a section of keys`)
      const out: Record<string, any> = {}
      const keyNodes: Record<string, unknown> = {}
      if (rule.kind === 'map' && rule.maxKeys !== undefined && target.items.length > rule.maxKeys) {
        fail(ctx, sectionBlame, `${name} has ${target.items.length} entries; at most ${rule.maxKeys} are allowed`)
      }
      for (const pair of target.items) {
        const key = isScalar(pair.key) ? pair.key.value : undefined
        if (typeof key !== 'string' && typeof key !== 'number') fail(ctx, pair.key ?? blame, `keys in ${name} must be plain words`)
        const keyText = String(key)
        const keyPath = path === '' ? keyText : `${path}.${keyText}`
        keyNodes[keyText] = pair.key
        if (rule.kind === 'map') {
          const problem = rule.checkKey?.(keyText)
          if (problem) fail(ctx, pair.key, `${JSON.stringify(keyPath)} ${problem}`)
          out[keyText] = read(ctx, pair.value, rule.value, keyPath, pair.key)
          continue
        }
        const child = rule.keys[keyText]
        if (!child) fail(ctx, pair.key, unknownKey(keyText, path, Object.keys(rule.keys)))
        out[keyText] = read(ctx, pair.value, child, keyPath, pair.key)
      }
      if (rule.kind === 'section') {
        for (const key of rule.required ?? []) {
          if (out[key] === undefined) fail(ctx, sectionBlame, `${name} needs "${key}"`)
        }
        const problem = rule.check?.(out, path)
        if (problem) fail(ctx, problem.key ? keyNodes[problem.key] : sectionBlame, problem.message)
      }
      return out
    }
    case 'list': {
      if (empty) return []
      if (rule.single && isScalar(target)) return [read(ctx, target, rule.item, path, blame)]
      if (!isSeq(target)) fail(ctx, blame, `${name} must be a list`)
      const items = target.items.map((item, i) => read(ctx, item, rule.item, `${path}[${i}]`, (item as Located | null)?.range ? item : blame))
      if (rule.uniqueBy) {
        const seen = new Set<unknown>()
        items.forEach((item, i) => {
          const value = (item as Record<string, unknown>)[rule.uniqueBy!]
          if (seen.has(value)) fail(ctx, target.items[i], `${name} has "${rule.uniqueBy}: ${value}" twice`)
          seen.add(value)
        })
      }
      return items
    }
    default:
      if (empty) fail(ctx, blame, `${name} has no value`)
      if (!isScalar(target)) fail(ctx, blame, `${name} ${expected(rule)}`)
      return readScalar(ctx, scalar, rule, name, blame)
  }
}

function readScalar(ctx: Context, value: unknown, rule: Rule, name: string, blame: unknown): unknown {
  switch (rule.kind) {
    case 'string': {
      if (typeof value !== 'string') fail(ctx, blame, `${name} ${expected(rule)}`)
      const problem = rule.check?.(value)
      if (problem) fail(ctx, blame, `${name} ${problem}`)
      return value
    }
    case 'boolean':
      if (typeof value !== 'boolean') fail(ctx, blame, `${name} ${expected(rule)}`)
      return value
    case 'count':
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) fail(ctx, blame, `${name} ${expected(rule)}`)
      return value
    case 'enum':
      if (typeof value !== 'string' || !rule.values.includes(value)) fail(ctx, blame, `${name} ${expected(rule)}`)
      return value
    case 'duration':
      if (typeof value !== 'string') fail(ctx, blame, `${name} ${expected(rule)}`)
      let ms: number
      try {
        ms = parseDuration(value, name)
      } catch (err) {
        if (err instanceof UsageError) fail(ctx, blame, err.message)
        throw err
      }
      if (rule.min !== undefined && ms < rule.min) fail(ctx, blame, `${name} is ${value}: it must be at least ${rule.min / 1000}s`)
      return ms
    default:
      throw new Error(`not a scalar rule: ${rule.kind}`)
  }
}

function expected(rule: Rule): string {
  switch (rule.kind) {
    case 'string': return 'must be a string'
    case 'boolean': return 'must be true or false'
    case 'count': return 'must be a whole number above zero'
    case 'duration': return 'must be a duration with a unit, e.g. 30s, 5m, 1h'
    case 'enum': return `must be one of ${rule.values.join(', ')}`
    case 'list': return 'must be a list'
    default: return 'must be a section of keys'
  }
}

function unknownKey(key: string, path: string, known: string[]): string {
  const message = `unknown key ${JSON.stringify(key)} in section ${JSON.stringify(path === '' ? '(top level)' : path)}`
  const close = known.find((candidate) => editDistance(candidate, key) <= 2)
  return close ? `${message} (did you mean "${close}"?)` : message
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]
}

// ---------------------------------------------------------------------------------------
// Loading

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
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines })
  const problem = doc.errors[0]
  if (problem) {
    // Only the first line of the parser's message: the rest quotes the file, which may hold a token.
    const line = problem.linePos?.[0].line
    const summary = problem.code === 'MULTIPLE_DOCS'
      ? 'the file holds more than one document (a second "---")'
      : problem.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')
    throw new ConfigError(`${sourceName}:${line === undefined ? '' : ` line ${line}:`} invalid YAML: ${summary}`)
  }
  const raw = read({ source: sourceName, doc, lines }, doc.contents, SCHEMA, '', doc.contents) as Raw
  return build(raw)
}

export function defaultConfig(): WarrenConfig {
  return build({})
}

type Raw = Record<string, any>

// A section written in the file turns its role on unless it says `enabled: false`; an
// absent one leaves it off, except the node role's (ssh_service), which is on by default.
function enabled(section: Raw | undefined, byDefault = false): boolean {
  return section === undefined ? byDefault : section.enabled ?? true
}

function build(raw: Raw): WarrenConfig {
  const dataDir: string = raw.data_dir ?? DEFAULTS.dataDir
  const nodename: string = raw.nodename ?? hostname()
  const auth: Raw = raw.auth_service ?? {}
  const storage: Raw = auth.storage ?? {}
  const proxy: Raw = raw.proxy_service ?? {}
  const ssh: Raw = raw.ssh_service ?? {}
  const storageType: StorageConfig['type'] = storage.type ?? 'sqlite'

  return {
    version: raw.version ?? DEFAULTS.version,
    dataDir,
    nodename,
    authToken: raw.auth_token,
    caPins: (raw.ca_pin ?? []).map(parsePin),
    authServers: raw.auth_servers ?? [],
    labels: raw.labels ?? {},
    advertiseIp: raw.advertise_ip,
    // The file's log section wins; the environment (WARREN_LOG_LEVEL, WARREN_LOG_FORMAT) sets the default.
    log: { level: raw.log?.level ?? logLevelFromEnv() ?? DEFAULTS.logLevel, format: raw.log?.format ?? logFormatFromEnv() ?? DEFAULTS.logFormat },
    keepaliveIntervalMs: raw.keepalive_interval ?? DEFAULTS.keepaliveIntervalMs,
    auth: {
      enabled: enabled(raw.auth_service),
      listenAddr: auth.listen_addr ?? DEFAULTS.authListenAddr,
      publicAddrs: auth.public_addr ?? [],
      clusterName: auth.cluster_name ?? nodename,
      tokens: auth.tokens ?? [],
      storage: withoutUndefined({
        type: storageType,
        path: storageType === 'sqlite' ? storage.path ?? join(dataDir, DEFAULTS.storageFile) : undefined,
        peers: storage.peers,
        prefix: storage.prefix,
        tls: storage.tls && withoutUndefined({ caFile: storage.tls.ca_file, certFile: storage.tls.cert_file, keyFile: storage.tls.key_file }),
      }),
      joinRateLimit: {
        burst: auth.join_rate_limit?.burst ?? DEFAULTS.joinRateLimit.burst,
        perMinute: auth.join_rate_limit?.per_minute ?? DEFAULTS.joinRateLimit.perMinute,
      },
      heartbeatTtlMs: auth.heartbeat_ttl ?? DEFAULTS.heartbeatTtlMs,
      nodeTtlMs: auth.node_ttl ?? DEFAULTS.nodeTtlMs,
      hostCertTtlMs: auth.host_cert_ttl ?? DEFAULTS.hostCertTtlMs,
      adminCertTtlMs: auth.admin_cert_ttl ?? DEFAULTS.adminCertTtlMs,
      recoveryWindowMs: auth.recovery_window ?? DEFAULTS.recoveryWindowMs,
    },
    proxy: {
      enabled: enabled(raw.proxy_service),
      webListenAddr: proxy.web_listen_addr ?? DEFAULTS.webListenAddr,
      tunnelListenAddr: proxy.tunnel_listen_addr ?? DEFAULTS.tunnelListenAddr,
      publicAddrs: proxy.public_addr ?? [],
      tunnelPublicAddrs: proxy.tunnel_public_addr ?? [],
      trustedLoadBalancers: proxy.trusted_load_balancers ?? [],
      acme: withoutUndefined({
        enabled: proxy.acme?.enabled ?? false,
        email: proxy.acme?.email,
        uri: proxy.acme?.uri,
        caFile: proxy.acme?.ca_file,
        httpListenAddr: proxy.acme?.http_listen_addr,
      }),
    },
    ssh: withoutUndefined({
      enabled: enabled(raw.ssh_service, true),
      listenAddr: ssh.listen_addr ?? DEFAULTS.sshListenAddr,
      publicAddr: ssh.public_addr?.[0],
      forwardPorts: (ssh.forward_ports ?? []).map((port: Raw) => ({ name: port.name, addr: port.addr })),
      portForwarding: ssh.port_forwarding ?? DEFAULTS.portForwarding,
    }),
  }
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as T
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
    const storage = next.auth.storage
    if (storage.type === 'sqlite' && storage.path === join(config.dataDir, DEFAULTS.storageFile)) {
      storage.path = join(flags.dataDir, DEFAULTS.storageFile)
    }
    next.dataDir = flags.dataDir
  }
  if (flags.nodename !== undefined) {
    if (flags.nodename.trim() === '') throw new UsageError('--nodename needs a name')
    if (next.auth.clusterName === config.nodename) next.auth.clusterName = flags.nodename
    next.nodename = flags.nodename
  }
  if (flags.token !== undefined) next.authToken = flags.token
  if (flags.authServer && flags.authServer.length > 0) {
    for (const server of flags.authServer) splitHostPort(server)
    next.authServers = [...flags.authServer]
  }
  if (flags.caPin && flags.caPin.length > 0) next.caPins = flags.caPin.map(parsePin)
  if (flags.labels) next.labels = checkFlagLabels({ ...next.labels, ...flags.labels })
  return next
}
