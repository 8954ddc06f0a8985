// Every key the config accepts has an effect. For each key: setting it changes the field the
// table names in WarrenConfig (and nothing else the table does not name), that field is read
// by the production code the table names, and where that code can run here, it behaves
// differently with the key set. A key added to the schema without a row here fails the test.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { stringify } from 'yaml'
import { forwardRefusal } from '../agent/forward-policy.ts'
import { sftpServerProgram } from '../agent/sftp-server.ts'
import { FailureRateLimiter } from '../auth/rate-limit.ts'
import { AddressList } from '../shared/address-list.ts'
import { withAssigned } from '../shared/assigned-labels.ts'
import { parseConfig, type WarrenConfig } from '../shared/config.ts'
import { CONFIG_SCHEMA } from '../shared/config-schema.ts'
import { createLogger } from '../shared/log.ts'
import type { DeclaredKey, SectionRule } from '../shared/yaml-schema/index.ts'
import { ROOT } from './helpers/cluster.ts'

interface Row {
  /** The key's path in the file. */
  key: string
  /** A value for it other than its default, as YAML would hold it. */
  value: unknown
  /** The file it is compared in, with and without the key (default: its sections alone). */
  base?: Record<string, unknown>
  /** Keys beside it that its value needs, written with it. */
  beside?: Record<string, unknown>
  /** Where the value lands in WarrenConfig, and the fields that follow it (a cluster name follows the nodename). */
  fields: string[]
  /** The production file that reads the field, and the text in it that does. */
  reader: [file: string, reads: string]
  /** That code (or the code it hands the value to) run over a config: what it does. */
  effect?: (config: WarrenConfig) => unknown
}

/** What a logger at the config's level and format writes for one debug and one info entry. */
function logged(config: WarrenConfig): string {
  const stream = new PassThrough()
  const log = createLogger('keys', { level: config.log.level, format: config.log.format, stream, now: () => new Date(0) })
  log.debug('a debug entry')
  log.info('an info entry')
  return String(stream.read() ?? '')
}

/** How many failed joins one address gets at once, and how long it then waits for the next. */
function rateLimit(config: WarrenConfig): [number, number] {
  const limiter = new FailureRateLimiter({ ...config.auth.joinRateLimit, clock: () => 0 })
  let granted = 0
  while (limiter.reserve('192.0.2.1') === 0) granted++
  return [granted, limiter.reserve('192.0.2.1')]
}

/** An auth server on etcd: the file the etcd keys are compared in. */
const ETCD = { auth_service: { storage: { type: 'etcd', peers: ['10.0.0.1:2379'] } } }

const ROWS: Row[] = [
  { key: 'data_dir', value: '/srv/warren', fields: ['dataDir', 'auth.storage.path'], reader: ['agent/agent.ts', 'this.config.dataDir'] },
  { key: 'nodename', value: 'pi-9', fields: ['nodename', 'auth.clusterName'], reader: ['shared/enroll.ts', 'config.nodename'] },
  { key: 'auth_token', value: '/etc/warren/token', fields: ['authToken'], reader: ['shared/enroll.ts', 'config.authToken'] },
  { key: 'ca_pin', value: `sha256:${'ab'.repeat(32)}`, fields: ['caPins'], reader: ['shared/enroll.ts', 'config.caPins'] },
  { key: 'auth_servers', value: ['proxy.example.com:3080'], fields: ['authServers'], reader: ['shared/enroll.ts', 'config.authServers'] },
  { key: 'labels', value: { site: 'kitchen' }, fields: ['labels'], reader: ['agent/agent.ts', 'this.config.labels'] },
  { key: 'log.level', value: 'debug', fields: ['log.level'], reader: ['cli/start.ts', 'config.log.level'], effect: logged },
  { key: 'log.format', value: 'json', fields: ['log.format'], reader: ['cli/start.ts', 'config.log.format'], effect: logged },
  { key: 'diag_addr', value: '127.0.0.1:3000', fields: ['diagAddr'], reader: ['cli/start.ts', 'config.diagAddr'] },
  { key: 'keepalive_interval', value: '20s', fields: ['keepaliveIntervalMs'], reader: ['agent/agent.ts', 'this.config.keepaliveIntervalMs'] },

  { key: 'auth_service.enabled', value: false, fields: ['auth.enabled'], reader: ['cli/start.ts', 'config.auth.enabled'] },
  { key: 'auth_service.listen_addr', value: '127.0.0.1:4025', fields: ['auth.listenAddr'], reader: ['auth/server.ts', 'auth.listenAddr'] },
  { key: 'auth_service.public_addr', value: ['auth.example.com:3025'], fields: ['auth.publicAddrs'], reader: ['auth/server.ts', 'auth.publicAddrs'] },
  { key: 'auth_service.cluster_name', value: 'example', fields: ['auth.clusterName'], reader: ['auth/server.ts', 'auth.clusterName'] },
  { key: 'auth_service.tokens', value: ['node:/etc/warren/node-token'], fields: ['auth.tokens'], reader: ['auth/server.ts', 'auth.tokens'] },
  {
    key: 'auth_service.assigned_label_keys',
    value: ['env'],
    fields: ['auth.assignedLabelKeys'],
    reader: ['auth/server.ts', 'auth.assignedLabelKeys'],
    // As AssignedLabels judges a node with nothing assigned that reports env=prod itself.
    effect: (config) => withAssigned({ env: 'prod', room: '2' }, undefined, new Set(config.auth.assignedLabelKeys)),
  },
  { key: 'auth_service.storage.type', value: 'etcd', beside: { peers: ['10.0.0.1:2379'] }, fields: ['auth.storage'], reader: ['auth/server.ts', 'openBackend(auth.storage)'] },
  { key: 'auth_service.storage.path', value: '/srv/backend.db', fields: ['auth.storage.path'], reader: ['auth/backend/index.ts', 'SqliteBackend.open(config.path)'] },
  { key: 'auth_service.storage.peers', value: ['10.0.0.2:2379'], base: ETCD, fields: ['auth.storage.peers'], reader: ['auth/backend/etcd.ts', 'options.peers'] },
  { key: 'auth_service.storage.prefix', value: '/other/', base: ETCD, fields: ['auth.storage.prefix'], reader: ['auth/backend/etcd.ts', 'options.prefix'] },
  { key: 'auth_service.storage.tls', value: {}, base: ETCD, fields: ['auth.storage.tls'], reader: ['auth/backend/etcd.ts', 'options.tls'] },
  { key: 'auth_service.storage.tls.ca_file', value: '/ca.pem', base: ETCD, fields: ['auth.storage.tls.caFile'], reader: ['auth/backend/etcd.ts', 'tls.caFile'] },
  { key: 'auth_service.storage.tls.cert_file', value: '/c.pem', base: ETCD, fields: ['auth.storage.tls.certFile'], reader: ['auth/backend/etcd.ts', 'tls.certFile'] },
  { key: 'auth_service.storage.tls.key_file', value: '/k.pem', base: ETCD, fields: ['auth.storage.tls.keyFile'], reader: ['auth/backend/etcd.ts', 'tls.keyFile'] },
  {
    key: 'auth_service.storage.insecure_plaintext',
    value: true,
    base: ETCD,
    fields: ['auth.storage.insecurePlaintext'],
    reader: ['auth/backend/etcd.ts', 'options.insecurePlaintext'],
  },
  { key: 'auth_service.join_rate_limit.burst', value: 3, fields: ['auth.joinRateLimit.burst'], reader: ['auth/rate-limit.ts', 'options.burst'], effect: rateLimit },
  { key: 'auth_service.join_rate_limit.per_minute', value: 600, fields: ['auth.joinRateLimit.perMinute'], reader: ['auth/rate-limit.ts', 'options.perMinute'], effect: rateLimit },
  { key: 'auth_service.heartbeat_ttl', value: '45s', fields: ['auth.heartbeatTtlMs'], reader: ['auth/server.ts', 'auth.heartbeatTtlMs'] },
  { key: 'auth_service.node_ttl', value: '24h', fields: ['auth.nodeTtlMs'], reader: ['auth/server.ts', 'auth.nodeTtlMs'] },
  { key: 'auth_service.host_cert_ttl', value: '24h', fields: ['auth.hostCertTtlMs'], reader: ['auth/server.ts', 'auth.hostCertTtlMs'] },
  { key: 'auth_service.admin_cert_ttl', value: '12h', fields: ['auth.adminCertTtlMs'], reader: ['auth/server.ts', 'auth.adminCertTtlMs'] },
  { key: 'auth_service.recovery_window', value: '48h', fields: ['auth.recoveryWindowMs'], reader: ['auth/server.ts', 'auth.recoveryWindowMs'] },
  { key: 'auth_service.audit.retention', value: '720h', fields: ['auth.audit.retentionMs'], reader: ['auth/server.ts', 'auth.audit.retentionMs'] },
  { key: 'auth_service.audit.file', value: '/var/log/warren-audit.jsonl', fields: ['auth.audit.file'], reader: ['auth/server.ts', 'auth.audit.file'] },
  { key: 'auth_service.recording', value: 'off', fields: ['auth.recording'], reader: ['auth/api/recordings.ts', "context.settings.recording === 'off'"] },
  { key: 'auth_service.recording_dir', value: '/srv/recordings', fields: ['auth.recordingDir'], reader: ['auth/server.ts', 'this.config.auth.recordingDir'] },

  { key: 'proxy_service.enabled', value: false, fields: ['proxy.enabled'], reader: ['cli/start.ts', 'config.proxy.enabled'] },
  { key: 'proxy_service.web_listen_addr', value: '127.0.0.1:4080', fields: ['proxy.webListenAddr'], reader: ['proxy/proxy.ts', 'this.config.proxy.webListenAddr'] },
  { key: 'proxy_service.tunnel_listen_addr', value: '127.0.0.1:4024', fields: ['proxy.tunnelListenAddr'], reader: ['proxy/proxy.ts', 'this.config.proxy.tunnelListenAddr'] },
  { key: 'proxy_service.public_addr', value: ['proxy.example.com:443'], fields: ['proxy.publicAddrs'], reader: ['proxy/proxy.ts', 'this.config.proxy.publicAddrs'] },
  { key: 'proxy_service.tunnel_public_addr', value: ['lb.example.com:3024'], fields: ['proxy.tunnelPublicAddrs'], reader: ['proxy/proxy.ts', 'proxy.tunnelPublicAddrs'] },
  {
    key: 'proxy_service.trusted_load_balancers',
    value: ['10.0.0.0/24'],
    fields: ['proxy.trustedLoadBalancers'],
    reader: ['proxy/proxy.ts', 'this.config.proxy.trustedLoadBalancers'],
    effect: (config) => new AddressList(config.proxy.trustedLoadBalancers, 'trusted address').has('10.0.0.7'),
  },
  { key: 'proxy_service.acme.enabled', value: true, fields: ['proxy.acme.enabled'], reader: ['proxy/proxy.ts', 'this.config.proxy.acme.enabled'] },
  { key: 'proxy_service.acme.email', value: 'ops@example.com', fields: ['proxy.acme.email'], reader: ['proxy/web-certificates.ts', 'acme.email'] },
  { key: 'proxy_service.acme.uri', value: 'https://acme.example.com/dir', fields: ['proxy.acme.uri'], reader: ['proxy/web-certificates.ts', 'acme.uri'] },
  { key: 'proxy_service.acme.ca_file', value: '/ca.pem', fields: ['proxy.acme.caFile'], reader: ['proxy/web-certificates.ts', 'acme.caFile'] },
  { key: 'proxy_service.acme.http_listen_addr', value: '0.0.0.0:80', fields: ['proxy.acme.httpListenAddr'], reader: ['proxy/web-certificates.ts', 'acme.httpListenAddr'] },

  { key: 'ssh_service.enabled', value: false, fields: ['ssh.enabled'], reader: ['cli/start.ts', 'config.ssh.enabled'] },
  { key: 'ssh_service.listen_addr', value: '127.0.0.1:4022', fields: ['ssh.listenAddr'], reader: ['agent/agent.ts', 'this.config.ssh.listenAddr'] },
  { key: 'ssh_service.public_addr', value: ['pi.example.com:4022'], fields: ['ssh.publicAddr'], reader: ['agent/agent.ts', 'this.config.ssh.publicAddr'] },
  { key: 'ssh_service.limits.max_unauthenticated', value: 4, fields: ['ssh.limits.maxUnauthenticated'], reader: ['agent/ssh-server.ts', 'limits.maxUnauthenticated'] },
  { key: 'ssh_service.limits.login_grace', value: '5s', fields: ['ssh.limits.loginGraceMs'], reader: ['agent/ssh-server.ts', 'limits.loginGraceMs'] },
  { key: 'ssh_service.limits.max_connections_per_user', value: 2, fields: ['ssh.limits.maxConnectionsPerUser'], reader: ['agent/ssh-server.ts', 'limits.maxConnectionsPerUser'] },
  {
    key: 'ssh_service.limits.max_sessions_per_connection',
    value: 2,
    fields: ['ssh.limits.maxSessionsPerConnection'],
    reader: ['agent/ssh-server.ts', 'limits.maxSessionsPerConnection'],
  },
  {
    key: 'ssh_service.limits.max_forwards_per_connection',
    value: 2,
    fields: ['ssh.limits.maxForwardsPerConnection'],
    reader: ['agent/ssh-server.ts', 'limits.maxForwardsPerConnection'],
  },
  {
    key: 'ssh_service.forward_ports',
    value: [{ name: 'webui', addr: '127.0.0.1:8080' }],
    fields: ['ssh.forwardPorts'],
    reader: ['agent/forward-policy.ts', 'ssh.forwardPorts'],
    effect: (config) => forwardRefusal(config.ssh, '127.0.0.1', 8080),
  },
  {
    key: 'ssh_service.port_forwarding',
    value: 'any',
    fields: ['ssh.portForwarding'],
    reader: ['agent/forward-policy.ts', 'ssh.portForwarding'],
    effect: (config) => forwardRefusal(config.ssh, '192.0.2.1', 80),
  },
  {
    key: 'ssh_service.sftp_server',
    value: '/opt/openssh/sftp-server',
    fields: ['ssh.sftpServer'],
    reader: ['agent/agent.ts', 'this.config.ssh.sftpServer'],
    effect: (config) => sftpServerProgram(config.ssh.sftpServer),
  },
]

/** Keys that are checked and carried nowhere, with a value they refuse. */
const CHECKED_ONLY: Record<string, string> = {
  version: 'v2',
}

/** The path of every key in `schema`, sections included, as the file writes them. */
function keyPaths(schema: SectionRule<unknown>, prefix = ''): string[] {
  return schema.keys.flatMap((declared: DeclaredKey) => {
    const path = prefix === '' ? declared.name : `${prefix}.${declared.name}`
    const nested = 'keys' in declared.rule ? keyPaths(declared.rule as SectionRule<unknown>, path) : []
    return [path, ...nested]
  })
}

/**
 * The config of `base` (default: nothing) with the sections of `key`'s path written, and
 * `key` set to `value` (with the keys `beside` it) unless `value` is undefined.
 */
function configWith(key: string, value: unknown, base: Record<string, unknown> = {}, beside: Record<string, unknown> = {}): WarrenConfig {
  const doc = structuredClone(base)
  const parts = key.split('.')
  const leaf = parts.pop()!
  let section: Record<string, unknown> = doc
  for (const part of parts) section = (section[part] ??= {}) as Record<string, unknown>
  if (value !== undefined) Object.assign(section, beside, { [leaf]: value })
  return parseConfig(stringify(doc), `${key}.yaml`)
}

/** The paths of the leaves that differ between two configs (lists compared whole). */
function differences(a: unknown, b: unknown, path = ''): string[] {
  const isObject = (value: unknown) => typeof value === 'object' && value !== null && !Array.isArray(value)
  if (isObject(a) && isObject(b)) {
    const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)])
    return [...keys].flatMap((key) => differences((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], path === '' ? key : `${path}.${key}`))
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [path]
}

const within = (path: string, field: string) => path === field || path.startsWith(`${field}.`)

t.test('every key of the schema has a row', async (t) => {
  // Sections whose keys have rows: written alone, a role's section turns the role on, which
  // the row of its enabled key covers. (auth_service.storage.tls is a key of its own: written,
  // even empty, it turns TLS to etcd on.)
  const sections = new Set([
    'log',
    'auth_service',
    'auth_service.storage',
    'auth_service.join_rate_limit',
    'auth_service.audit',
    'proxy_service',
    'proxy_service.acme',
    'ssh_service',
    'ssh_service.limits',
  ])
  const inSchema = keyPaths(CONFIG_SCHEMA).filter((path) => !sections.has(path))
  const inTable = [...ROWS.map((row) => row.key), ...Object.keys(CHECKED_ONLY)]
  t.same([...inTable].sort(), [...inSchema].sort(), 'the table names the keys of the schema, no more and no fewer')
})

t.test('setting a key changes the fields its row names, and only those', async (t) => {
  for (const row of ROWS) {
    const base = configWith(row.key, undefined, row.base)
    const set = configWith(row.key, row.value, row.base, row.beside)
    const changed = differences(base, set)
    t.ok(changed.length > 0, `${row.key} changes the config`)
    t.same(
      changed.filter((path) => !row.fields.some((field) => within(path, field))),
      [],
      `${row.key} changes nothing but ${row.fields.join(', ')}`,
    )
    t.same(
      row.fields.filter((field) => !changed.some((path) => within(path, field))),
      [],
      `${row.key} changes each of ${row.fields.join(', ')}`,
    )
  }
})

t.test('each field is read by the production code its row names', async (t) => {
  for (const row of ROWS) {
    const [file, reads] = row.reader
    t.notMatch(file, /\.test\.ts$|^shared\/config|^shared\/yaml-schema\/|^test\/|^bench\//, `${row.key}: the reader is production code outside the config`)
    const last = row.fields[0].split('.').pop()!
    t.ok(reads.includes(last), `${row.key}: the reader's text names the field ${last}`)
    t.ok(readFileSync(join(ROOT, file), 'utf8').includes(reads), `${row.key} is read in ${file} (${reads})`)
  }
})

t.test('where the reader runs here, the key changes what it does', async (t) => {
  for (const row of ROWS.filter((row) => row.effect)) {
    const base = configWith(row.key, undefined, row.base)
    const set = configWith(row.key, row.value, row.base, row.beside)
    t.notSame(row.effect!(set), row.effect!(base), `${row.key} = ${row.value}`)
  }
})

t.test('keys carried nowhere are checked: another value is refused', async (t) => {
  for (const [key, refused] of Object.entries(CHECKED_ONLY)) {
    t.throws(() => configWith(key, refused), new RegExp(`"${key}" must be`), key)
    t.same(configWith(key, undefined), configWith(key, 'v1'), `${key} changes nothing in the config`)
  }
})
