import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { applyFlags, DEFAULTS, defaultConfig, loadConfigFile, parseConfig, parseLabels, resolveTokenValue, type WarrenConfig } from './config.ts'
import { ConfigError, UsageError } from './errors.ts'

const PIN = 'sha256:' + 'ab'.repeat(32)
const PIN2 = 'sha256:' + 'cd'.repeat(32)

const FULL = `version: v1
data_dir: /srv/warren
nodename: host-1
auth_token: /etc/warren/token
ca_pin: ${PIN.toUpperCase().replace('SHA256', 'sha256')}
auth_servers: ["auth.example.com:3025"]
labels: { distro: ubuntu, env: prod }
log: { level: debug, format: json }
keepalive_interval: 20s
auth_service:
  enabled: true
  listen_addr: 0.0.0.0:3025
  public_addr: ["auth.example.com:3025"]
  cluster_name: example
  tokens: ["proxy,node:secret-value-0123456", "auth:/path/to/file"]
  assigned_label_keys: [env, site]
  storage: { type: sqlite, path: /var/lib/warren/backend.db }
  join_rate_limit: { burst: 20, per_minute: 60 }
  heartbeat_ttl: 45s
  node_ttl: 2160h
  host_cert_ttl: 720h
  admin_cert_ttl: 12h
  recovery_window: 2160h
proxy_service:
  enabled: true
  web_listen_addr: 0.0.0.0:3080
  tunnel_listen_addr: 0.0.0.0:3024
  public_addr: proxy.example.com:443
  tunnel_public_addr: [proxy.example.com:3024]
  trusted_load_balancers: ["10.0.0.1", "10.0.0.0/24", "fd00::/8"]
  acme: { enabled: true, email: ops@example.com, uri: "https://acme.example.com/dir" }
ssh_service:
  enabled: false
  listen_addr: 127.0.0.1:3022
  public_addr: pi.example.com:4022
  forward_ports:
    - name: webui
      addr: 127.0.0.1:8080
    - { name: db, addr: "[::1]:5432" }
  port_forwarding: any
`

function errorOf(fn: () => unknown): Error | undefined {
  try {
    fn()
  } catch (err) {
    return err as Error
  }
  return undefined
}

function configError(t: Test, text: string, message: string | RegExp) {
  const err = errorOf(() => parseConfig(text, '/etc/warren.yaml'))
  t.type(err, ConfigError)
  if (typeof message === 'string') t.equal(err?.message, message)
  else t.match(err?.message, message)
}

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-config-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

t.test('a full valid file', async (t) => {
  const config = parseConfig(FULL, 'full.yaml')
  t.same(config, {
    dataDir: '/srv/warren',
    nodename: 'host-1',
    authToken: '/etc/warren/token',
    caPins: [PIN],
    authServers: ['auth.example.com:3025'],
    labels: { distro: 'ubuntu', env: 'prod' },
    log: { level: 'debug', format: 'json' },
    keepaliveIntervalMs: 20_000,
    auth: {
      enabled: true,
      listenAddr: '0.0.0.0:3025',
      publicAddrs: ['auth.example.com:3025'],
      clusterName: 'example',
      tokens: ['proxy,node:secret-value-0123456', 'auth:/path/to/file'],
      assignedLabelKeys: ['env', 'site'],
      storage: { type: 'sqlite', path: '/var/lib/warren/backend.db' },
      joinRateLimit: { burst: 20, perMinute: 60 },
      heartbeatTtlMs: 45_000,
      nodeTtlMs: 90 * 24 * 3600_000,
      hostCertTtlMs: 720 * 3_600_000,
      adminCertTtlMs: 12 * 3_600_000,
      recoveryWindowMs: 2160 * 3_600_000,
      audit: { retentionMs: 90 * 24 * 3_600_000 },
      recording: 'node',
    },
    proxy: {
      enabled: true,
      webListenAddr: '0.0.0.0:3080',
      tunnelListenAddr: '0.0.0.0:3024',
      publicAddrs: ['proxy.example.com:443'],
      tunnelPublicAddrs: ['proxy.example.com:3024'],
      trustedLoadBalancers: ['10.0.0.1', '10.0.0.0/24', 'fd00::/8'],
      acme: { enabled: true, email: 'ops@example.com', uri: 'https://acme.example.com/dir' },
    },
    ssh: {
      enabled: false,
      listenAddr: '127.0.0.1:3022',
      publicAddr: 'pi.example.com:4022',
      forwardPorts: [
        { name: 'webui', addr: '127.0.0.1:8080' },
        { name: 'db', addr: '[::1]:5432' },
      ],
      portForwarding: 'any',
      sftpServer: 'auto',
      limits: { maxUnauthenticated: 32, loginGraceMs: 30_000, maxConnectionsPerUser: 16, maxSessionsPerConnection: 10, maxForwardsPerConnection: 64 },
    },
  } satisfies WarrenConfig)
})

t.test('defaults', async (t) => {
  const config = defaultConfig()
  t.same(parseConfig('', 'empty.yaml'), config, 'an empty file is the defaults')
  t.equal(config.dataDir, DEFAULTS.dataDir)
  t.equal(config.nodename, hostname())
  t.equal(config.auth.clusterName, hostname(), 'the cluster is named after the nodename')
  t.same(config.auth.storage, { type: 'sqlite', path: '/var/lib/warren/backend.db' })
  t.equal(config.auth.listenAddr, '0.0.0.0:3025')
  t.equal(config.proxy.webListenAddr, '0.0.0.0:3080')
  t.equal(config.proxy.tunnelListenAddr, '0.0.0.0:3024')
  t.equal(config.keepaliveIntervalMs, 15_000)
  t.equal(config.auth.heartbeatTtlMs, 30_000)
  t.equal(config.auth.nodeTtlMs, 30 * 24 * 3600_000, 'offline nodes are listed for 30 days')
  t.same(config.auth.joinRateLimit, { burst: 10, perMinute: 30 })
  t.same(
    [config.auth.hostCertTtlMs, config.auth.adminCertTtlMs, config.auth.recoveryWindowMs],
    [30 * 24 * 3_600_000, 7 * 24 * 3_600_000, 365 * 24 * 3_600_000],
    'host certificates 30 days, the admin identity 7, recovery a year',
  )
  t.same(config.log, { level: 'info', format: 'text' })
  t.same(
    [config.auth.enabled, config.proxy.enabled, config.ssh.enabled],
    [false, false, undefined],
    'ssh_service not written: warren start runs the node role alone, as in Teleport',
  )
  t.equal(config.ssh.listenAddr, '0.0.0.0:3022')
  t.equal(config.ssh.publicAddr, undefined)
  t.equal(config.ssh.portForwarding, 'declared', 'ssh -L reaches only declared ports unless the config says otherwise')
  t.same(config.caPins, [])
  t.same(config.labels, {})
  t.equal(config.authToken, undefined)
})

t.test('WARREN_LOG_LEVEL and WARREN_LOG_FORMAT set the log section that the file leaves out', async (t) => {
  const saved = { level: process.env.WARREN_LOG_LEVEL, format: process.env.WARREN_LOG_FORMAT }
  t.teardown(() => {
    for (const [key, value] of [
      ['WARREN_LOG_LEVEL', saved.level],
      ['WARREN_LOG_FORMAT', saved.format],
    ] as const) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  })
  process.env.WARREN_LOG_LEVEL = 'DEBUG'
  process.env.WARREN_LOG_FORMAT = 'json'
  t.same(defaultConfig().log, { level: 'debug', format: 'json' })
  t.same(parseConfig('log: { level: warn }', 'warn.yaml').log, { level: 'warn', format: 'json' }, 'the file wins where it speaks')
  process.env.WARREN_LOG_LEVEL = 'loud'
  process.env.WARREN_LOG_FORMAT = 'xml'
  t.same(defaultConfig().log, { level: 'info', format: 'text' }, 'values that name no level or format are ignored')
})

t.test('a section written in the file is enabled unless it says otherwise', async (t) => {
  const config = parseConfig('data_dir: /d\nauth_service:\nproxy_service: { enabled: false }\nssh_service: { listen_addr: "127.0.0.1:4022" }\n', 'x')
  t.same([config.auth.enabled, config.proxy.enabled, config.ssh.enabled], [true, false, true])
  t.equal(parseConfig('ssh_service: { enabled: false }\n', 'x').ssh.enabled, false, 'the node role is turned off only by saying so')
  t.same(config.auth.storage, { type: 'sqlite', path: '/d/backend.db' }, 'storage follows data_dir')
  t.equal(config.auth.clusterName, config.nodename)
})

t.test('single values are accepted where lists are expected', async (t) => {
  const config = parseConfig(`auth_servers: auth:3025\nca_pin: ${PIN}\n`, 'x')
  t.same(config.authServers, ['auth:3025'])
  t.same(config.caPins, [PIN])
})

t.test('etcd storage', async (t) => {
  const config = parseConfig(
    'auth_service:\n  storage:\n    type: etcd\n    peers: ["https://10.0.0.1:2379"]\n    prefix: /warren\n    tls: { ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem }\n',
    'x',
  )
  t.same(config.auth.storage, {
    type: 'etcd',
    peers: ['https://10.0.0.1:2379'],
    prefix: '/warren',
    tls: { caFile: '/ca.pem', certFile: '/c.pem', keyFile: '/k.pem' },
  })
  t.same(
    parseConfig('auth_service:\n  storage: { type: etcd, peers: "10.0.0.1:2379" }\n', 'x').auth.storage,
    { type: 'etcd', peers: ['10.0.0.1:2379'], prefix: '/warren/' },
    'the prefix by default, and no TLS unless written',
  )
  // An empty or relative SQLite path is refused, not taken from the working directory.
  configError(t, 'auth_service:\n  storage: { type: sqlite, path: "" }\n', /^\/etc\/warren\.yaml: line 2: "auth_service\.storage\.path" /)
  configError(t, 'auth_service:\n  storage: { type: sqlite, path: backend.db }\n', /^\/etc\/warren\.yaml: line 2: "auth_service\.storage\.path" /)
  t.same(parseConfig('auth_service:\n  storage: { type: sqlite, path: /srv/warren/backend.db }\n', 'x').auth.storage, { type: 'sqlite', path: '/srv/warren/backend.db' })
  configError(
    t,
    'auth_service:\n  storage:\n    type: etcd\n    peers: [a]\n    path: /x\n',
    '/etc/warren.yaml: line 5: "auth_service.storage.path" applies only to sqlite storage',
  )
})

t.test('invalid YAML names the line', async (t) => {
  configError(t, 'version: v1\nlabels: {distro: ubuntu\nnodename: x\n', /^\/etc\/warren\.yaml: line \d: invalid YAML: /)
  configError(t, 'nodename: a\nnodename: b\n', '/etc/warren.yaml: line 2: invalid YAML: Map keys must be unique')
  configError(t, 'a:\n  b: 1\n c: 2\n', /^\/etc\/warren\.yaml: line 3: invalid YAML: All mapping items must start at the same column$/)
  configError(t, 'nodename: a\n---\nnodename: b\n', /line 2: invalid YAML: the file holds more than one document/)
})

t.test('invalid YAML does not echo the file, which may hold a token', async (t) => {
  const err = errorOf(() => parseConfig('auth_token: "s3cr3t-token\n', 'x'))
  t.type(err, ConfigError)
  t.notMatch(err?.message, 's3cr3t')
})

t.test('unknown keys name the key, its section and line', async (t) => {
  configError(t, 'version: v1\ndata_dir: /d\n\nauth_servr: ["a:1"]\n', /^\/etc\/warren\.yaml: line 4: unknown key "auth_servr" in section "\(top level\)"/)
  configError(t, 'version: v1\ndata_dir: /d\n\nauth_servr: ["a:1"]\n', /\(did you mean "auth_servers"\?\)$/)
  configError(
    t,
    'auth_service:\n  storage:\n    type: sqlite\n    pathh: /x\n',
    '/etc/warren.yaml: line 4: unknown key "pathh" in section "auth_service.storage" (did you mean "path"?)',
  )
  configError(
    t,
    'ssh_service:\n  forward_ports:\n    - name: a\n      addr: "1.2.3.4:5"\n      color: red\n',
    '/etc/warren.yaml: line 5: unknown key "color" in section "ssh_service.forward_ports[0]"',
  )
})

t.test('keys that no longer do anything are refused, saying why', async (t) => {
  configError(
    t,
    'nodename: n\nadvertise_ip: 10.0.0.5\n',
    /^\/etc\/warren\.yaml: line 2: unknown key "advertise_ip" in section "\(top level\)": it no longer has any effect .*ssh_service\.public_addr.*; remove it$/,
  )
})

t.test('addresses of which only one is used take one', async (t) => {
  configError(t, 'ssh_service:\n  public_addr: ["a:1", "b:2"]\n', '/etc/warren.yaml: line 2: "ssh_service.public_addr" has 2 entries; at most 1 is allowed')
  configError(t, 'auth_servers: ["a:1", "b:2"]\n', '/etc/warren.yaml: line 1: "auth_servers" has 2 entries; at most 1 is allowed')
  t.throws(() => applyFlags(defaultConfig(), { authServer: ['a:1', 'b:2'] }), new UsageError('--auth-server takes one address, not 2'))
  configError(t, 'proxy_service:\n  tunnel_public_addr: ["a:1", "b:2"]\n', '/etc/warren.yaml: line 2: "proxy_service.tunnel_public_addr" has 2 entries; at most 1 is allowed')
  t.equal(parseConfig('ssh_service:\n  public_addr: ["a:1"]\n', 'x').ssh.publicAddr, 'a:1', 'a list of one')
  t.equal(parseConfig('ssh_service:\n  public_addr: a:1\n', 'x').ssh.publicAddr, 'a:1', 'or the address alone')
  t.same(parseConfig('proxy_service:\n  tunnel_public_addr: lb:3024\n', 'x').proxy.tunnelPublicAddrs, ['lb:3024'])
})

t.test('ill-typed values name the key path and line', async (t) => {
  configError(t, 'version: v1\nnodename: n\nlabels:\n  env: prod\n  arch: arm64\n\n  distro: 22.04\n', '/etc/warren.yaml: line 7: "labels.distro" must be a string')
  configError(t, 'nodename: [a]\n', '/etc/warren.yaml: line 1: "nodename" must be a string')
  configError(t, 'auth_token:\n', '/etc/warren.yaml: line 1: "auth_token" has no value')
  configError(t, 'auth_servers: { a: b }\n', '/etc/warren.yaml: line 1: "auth_servers" must be a list')
  configError(t, 'auth_service:\n  public_addr:\n    - a:1\n    - 3025\n', '/etc/warren.yaml: line 4: "auth_service.public_addr[1]" must be a string')
  configError(t, 'proxy_service:\n  enabled: yes\n', '/etc/warren.yaml: line 2: "proxy_service.enabled" must be true or false')
  configError(t, 'log:\n  level: verbose\n', '/etc/warren.yaml: line 2: "log.level" must be one of debug, info, warn, error')
  configError(t, 'version: v3\n', '/etc/warren.yaml: line 1: "version" must be one of v1')
  configError(t, 'ssh_service:\n  port_forwarding: all\n', '/etc/warren.yaml: line 2: "ssh_service.port_forwarding" must be one of declared, any, off')
  configError(t, 'ssh_service:\n  sftp_server: none\n', '/etc/warren.yaml: line 2: "ssh_service.sftp_server" must be auto, builtin or the absolute path of an sftp-server')
  configError(t, 'auth_service:\n  join_rate_limit: { burst: 1.5 }\n', '/etc/warren.yaml: line 2: "auth_service.join_rate_limit.burst" must be a whole number above zero')
  configError(t, 'auth_service: yes\n', '/etc/warren.yaml: line 1: "auth_service" must be a section of keys')
  configError(t, '- a\n- b\n', '/etc/warren.yaml: line 1: the config must be a map of keys such as "auth_service:"')
  configError(t, 'labels: { "bad key": x }\n', '/etc/warren.yaml: line 1: "labels.bad key" is not a valid label name (letters, digits and / . _ : * -)')
})

t.test('labels follow the label rules, named with their key and line', async (t) => {
  configError(t, 'nodename: n\nlabels:\n  env: prod\n  motd: "\\e[2J"\n', '/etc/warren.yaml: line 4: "labels.motd" holds a control character; label values must be printable text')
  configError(t, 'labels:\n  note: "x\\r\\nforged-row"\n', '/etc/warren.yaml: line 2: "labels.note" holds a control character; label values must be printable text')
  configError(t, `labels: { ${'k'.repeat(129)}: v }\n`, `/etc/warren.yaml: line 1: "labels.${'k'.repeat(129)}" is longer than 128 characters`)
  const many = (n: number) => 'nodename: n\nlabels:\n' + Array.from({ length: n }, (_, i) => `  k${i}: v\n`).join('')
  configError(t, many(65), '/etc/warren.yaml: line 2: "labels" has 65 entries; at most 64 are allowed')
  const full = parseConfig(many(64), 'x')
  t.throws(() => applyFlags(full, { labels: { extra: 'x' } }), /^--labels: at most 64 labels are allowed, not 65/, 'flags merged over the file are checked too')
})

t.test('durations', async (t) => {
  configError(t, 'nodename: n\nkeepalive_interval: 15x\n', '/etc/warren.yaml: line 2: invalid duration "15x" for "keepalive_interval": use a number with a unit, e.g. 30s, 5m, 1h')
  configError(t, 'auth_service:\n  heartbeat_ttl: 30\n', '/etc/warren.yaml: line 2: "auth_service.heartbeat_ttl" must be a duration with a unit, e.g. 30s, 5m, 1h')
  configError(t, 'keepalive_interval: 0s\n', /line 1: invalid duration "0s" for "keepalive_interval": must be more than zero/)
  configError(t, 'auth_service:\n  cluster_name: c\n  host_cert_ttl: 5s\n', '/etc/warren.yaml: line 3: "auth_service.host_cert_ttl" is 5s: it must be at least 10s')
  configError(t, 'auth_service:\n  admin_cert_ttl: 500ms\n', '/etc/warren.yaml: line 2: "auth_service.admin_cert_ttl" is 500ms: it must be at least 10s')
  configError(t, 'auth_service:\n  recovery_window: 1y\n', /line 2: invalid duration "1y" for "auth_service.recovery_window"/)
  t.equal(parseConfig('auth_service:\n  host_cert_ttl: 15s\n', 'x').auth.hostCertTtlMs, 15_000, 'short lifetimes are accepted')
})

t.test('durations have bounds: none fed to a timer overflows it, none is shorter than what it waits for', async (t) => {
  // setInterval's longest delay is 2^31-1 ms (about 597h): a longer keepalive fired every millisecond.
  configError(t, 'keepalive_interval: 600h\n', '/etc/warren.yaml: line 1: "keepalive_interval" is 600h: it must be at most 1h')
  configError(t, 'keepalive_interval: 2h\n', '/etc/warren.yaml: line 1: "keepalive_interval" is 2h: it must be at most 1h')
  configError(t, 'keepalive_interval: 1ms\n', '/etc/warren.yaml: line 1: "keepalive_interval" is 1ms: it must be at least 1s')
  configError(
    t,
    'auth_service:\n  heartbeat_ttl: 3s\n',
    '/etc/warren.yaml: line 2: "auth_service.heartbeat_ttl" is 3s: it must be at least 6s (longer than the 5s between the heartbeats of nodes and proxies)',
  )
  configError(t, 'auth_service:\n  heartbeat_ttl: 5s\n', /line 2: "auth_service.heartbeat_ttl" is 5s: it must be at least 6s/)
  configError(t, 'auth_service:\n  heartbeat_ttl: 90m\n', '/etc/warren.yaml: line 2: "auth_service.heartbeat_ttl" is 90m: it must be at most 1h')
  for (const key of ['node_ttl', 'host_cert_ttl', 'admin_cert_ttl', 'recovery_window']) {
    configError(t, `auth_service:\n  ${key}: 2500000000h\n`, `/etc/warren.yaml: line 2: "auth_service.${key}" is 2500000000h: it must be at most 87600h`)
  }
  configError(t, 'auth_service:\n  audit: { retention: 100000h }\n', '/etc/warren.yaml: line 2: "auth_service.audit.retention" is 100000h: it must be at most 87600h')
  const bounds = parseConfig('keepalive_interval: 1s\nauth_service:\n  heartbeat_ttl: 6s\n  recovery_window: 87600h\n', 'x')
  t.same([bounds.keepaliveIntervalMs, bounds.auth.heartbeatTtlMs, bounds.auth.recoveryWindowMs], [1000, 6000, 87600 * 3_600_000], 'the bounds themselves are accepted')
  t.equal(parseConfig('keepalive_interval: 1h\nauth_service:\n  heartbeat_ttl: 1h\n', 'x').keepaliveIntervalMs, 3_600_000)
})

t.test('the cluster name is a name: it names a directory of every login and is in every certificate', async (t) => {
  for (const name of ['', 'a b/c', '../../x', '..', '.hidden', 'a/b', 'x'.repeat(129), 'tab\tname']) {
    configError(
      t,
      `auth_service:\n  cluster_name: ${JSON.stringify(name)}\n`,
      `/etc/warren.yaml: line 2: "auth_service.cluster_name" must be 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit and without "..": it names a directory of every login (~/.warren/<cluster>) and is in every certificate`,
    )
  }
  for (const name of ['example', 'lab.example.com', 'Home_Lab-2', 'x'.repeat(128)]) {
    t.equal(parseConfig(`auth_service:\n  cluster_name: ${name}\n`, 'x').auth.clusterName, name)
  }
})

t.test('paths and lists that must hold something', async (t) => {
  configError(t, 'data_dir: ""\n', '/etc/warren.yaml: line 1: "data_dir" is empty: give a directory, or leave the key out')
  configError(t, 'data_dir: "  "\n', '/etc/warren.yaml: line 1: "data_dir" is empty: give a directory, or leave the key out')
  configError(t, 'auth_service:\n  recording_dir: ""\n', '/etc/warren.yaml: line 2: "auth_service.recording_dir" is empty: give a directory, or leave the key out')
  configError(t, 'auth_service:\n  audit: { file: "" }\n', '/etc/warren.yaml: line 2: "auth_service.audit.file" is empty: give a file, or leave the key out')
  configError(t, 'auth_service:\n  storage: { type: etcd, peers: [] }\n', '/etc/warren.yaml: line 2: "auth_service.storage.peers" has no entries; at least 1 is needed')
  configError(t, 'auth_service:\n  storage:\n    type: etcd\n    peers:\n', '/etc/warren.yaml: line 4: "auth_service.storage.peers" has no entries; at least 1 is needed')
  t.equal(parseConfig('nodename: n\n', 'x').dataDir, DEFAULTS.dataDir, 'left out: the default')
})

t.test('addresses, pins and load balancers are checked', async (t) => {
  configError(t, 'auth_service:\n  listen_addr: "host:99999"\n', /^\/etc\/warren\.yaml: line 2: "auth_service\.listen_addr" is not valid: invalid port "99999"/)
  configError(t, 'auth_servers: ["https://auth.example.com:3025"]\n', /line 1: "auth_servers\[0\]" is not valid: invalid address/)
  configError(t, 'ca_pin: sha256:abc\n', /line 1: "ca_pin" is not valid: invalid CA pin/)
  configError(t, 'proxy_service:\n  trusted_load_balancers: [10.0.0.0/33]\n', /line 2: "proxy_service.trusted_load_balancers\[0\]" must be an IP address or a CIDR range/)
  configError(t, 'ssh_service:\n  forward_ports:\n    - { name: web, addr: localhost }\n', /line 3: "ssh_service.forward_ports\[0\].addr" must include a port/)
  configError(t, 'ssh_service:\n  public_addr: "ssh://pi:3022"\n', /line 2: "ssh_service.public_addr" is not valid: invalid address/)
})

t.test('cross-key rules', async (t) => {
  configError(t, 'auth_service:\n  storage:\n    type: etcd\n', '/etc/warren.yaml: line 2: "auth_service.storage" needs "peers" for etcd storage')
  configError(t, 'auth_service:\n  storage:\n    type: sqlite\n    peers: [a]\n', '/etc/warren.yaml: line 4: "auth_service.storage.peers" applies only to etcd storage')
  configError(t, 'ssh_service:\n  forward_ports:\n    - name: web\n', '/etc/warren.yaml: line 3: "ssh_service.forward_ports[0]" needs "addr"')
  configError(
    t,
    'ssh_service:\n  forward_ports:\n    - { name: web, addr: "127.0.0.1:80" }\n    - { name: web, addr: "127.0.0.1:81" }\n',
    '/etc/warren.yaml: line 4: "ssh_service.forward_ports" has "name: web" twice',
  )
})

t.test('static tokens are checked without printing them', async (t) => {
  for (const token of ['s3cr3t', 'node:', ':s3cr3t', 'No de:s3cr3t']) {
    const err = errorOf(() => parseConfig(`auth_service:\n  tokens:\n    - "${token}"\n`, 'x'))
    t.type(err, ConfigError, token)
    t.match(err?.message, /line 3: "auth_service.tokens\[0\]" must be ROLES:TOKEN/)
    t.notMatch(err?.message, 's3cr3t')
  }
})

t.test('static tokens shorter than 16 characters are refused with the key and line', async (t) => {
  const err = errorOf(() => parseConfig('auth_service:\n  tokens:\n    - "node:long-enough-0123456789"\n    - "proxy,node:s3cr3t-short"\n', 'x'))
  t.type(err, ConfigError)
  t.match(err?.message, /^x: line 4: "auth_service\.tokens\[1\]" holds a token shorter than 16 characters/)
  t.notMatch(err?.message, 's3cr3t')
  t.equal(
    errorOf(() => parseConfig('auth_service:\n  tokens: ["node:/a/file/is/read/later"]\n', 'x')),
    undefined,
    'a file is read when the auth server starts',
  )
})

t.test('a static token in its long form assigns labels; its problems are named without its value', async (t) => {
  const config = parseConfig(
    'auth_service:\n  tokens:\n    - "proxy:proxy-token-0123456789"\n    - { roles: [node], token: /etc/warren/fleet-token, labels: { env: prod, site: berlin } }\n',
    'x',
  )
  t.same(config.auth.tokens, ['proxy:proxy-token-0123456789', { roles: ['node'], token: '/etc/warren/fleet-token', labels: { env: 'prod', site: 'berlin' } }])
  const withoutLabels = parseConfig('auth_service:\n  tokens:\n    - roles: node\n      token: fleet-token-0123456789\n', 'x')
  t.same(withoutLabels.auth.tokens, [{ roles: ['node'], token: 'fleet-token-0123456789', labels: {} }], 'one role may stand alone, and labels may be left out')
  const problems: [string, RegExp][] = [
    ['{ roles: [node], token: s3cr3t-short }', /line 3: "auth_service\.tokens\[0\]\.token" holds a token shorter than 16 characters/],
    ['{ roles: [node] }', /line 3: "auth_service\.tokens\[0\]" needs "token"/],
    ['{ token: s3cr3t-0123456789abcdef }', /line 3: "auth_service\.tokens\[0\]" needs "roles"/],
    ['{ roles: [node], token: s3cr3t-0123456789abcdef, labels: { "bad key": x } }', /"auth_service\.tokens\[0\]\.labels\.bad key" is not a valid label name/],
    ['{ roles: [node], tokn: s3cr3t-0123456789abcdef }', /"tokn"/],
    ['12345', /line 3: "auth_service\.tokens\[0\]" must be a string, or a section of keys/],
    ['[node, s3cr3t-0123456789abcdef]', /line 3: "auth_service\.tokens\[0\]" must be a string, or a section of keys/],
  ]
  for (const [entry, message] of problems) {
    const err = errorOf(() => parseConfig(`auth_service:\n  tokens:\n    - ${entry}\n`, 'x'))
    t.type(err, ConfigError, entry)
    t.match(err?.message, message, entry)
    t.notMatch(err?.message, 's3cr3t', `${entry}: the value is not repeated`)
  }
})

t.test('assigned_label_keys takes label keys, and names one that is none by its position', async (t) => {
  t.same(parseConfig('auth_service:\n  assigned_label_keys: [env, team/owner]\n', 'x').auth.assignedLabelKeys, ['env', 'team/owner'])
  t.same(parseConfig('auth_service:\n  enabled: true\n', 'x').auth.assignedLabelKeys, [], 'none unless written')
  t.match(
    errorOf(() => parseConfig('auth_service:\n  assigned_label_keys: [env, "bad key"]\n', 'x'))?.message,
    /line 2: "auth_service\.assigned_label_keys\[1\]" is not a valid label name/,
  )
  t.match(errorOf(() => parseConfig('auth_service:\n  assigned_label_keys: env\n', 'x'))?.message, /"auth_service\.assigned_label_keys" must be a list/)
})

t.test('loadConfigFile reads a file and names it in errors', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'warren.yaml')
  await writeFile(path, FULL)
  t.same(loadConfigFile(path), parseConfig(FULL, path))
  await writeFile(path, 'nodename: n\nbogus: 1\n')
  t.equal(errorOf(() => loadConfigFile(path))?.message, `${path}: line 2: unknown key "bogus" in section "(top level)"`)
  const missing = join(dir, 'absent.yaml')
  const err = errorOf(() => loadConfigFile(missing))
  t.type(err, ConfigError)
  t.equal(err?.message, `cannot read config file ${missing}: no such file`)
})

t.test('flags override the file', async (t) => {
  const file = parseConfig(FULL, 'x')
  const merged = applyFlags(file, {
    dataDir: '/other',
    nodename: 'host-2',
    token: 'flag-token',
    authServer: ['proxy.example.com:3080'],
    caPin: [PIN2.toUpperCase().replace('SHA256', 'sha256')],
    labels: { env: 'dev', arch: 'arm64' },
  })
  t.equal(merged.dataDir, '/other')
  t.equal(merged.nodename, 'host-2')
  t.equal(merged.authToken, 'flag-token')
  t.same(merged.authServers, ['proxy.example.com:3080'])
  t.same(merged.caPins, [PIN2], 'pins are normalised')
  t.same(merged.labels, { distro: 'ubuntu', env: 'dev', arch: 'arm64' }, 'labels merge, flags win')
  t.same(merged.auth.storage, { type: 'sqlite', path: '/var/lib/warren/backend.db' }, 'an explicit storage path stays')
  t.equal(merged.auth.clusterName, 'example', 'an explicit cluster name stays')
  t.equal(file.nodename, 'host-1', 'the input is not changed')
  t.same(applyFlags(file, {}), file, 'no flags, no change')
  t.same(applyFlags(file, { authServer: [], caPin: [] }).authServers, file.authServers, 'empty lists change nothing')
})

t.test('values that followed a default follow the flag', async (t) => {
  const file = parseConfig('nodename: host-1\nauth_service:\n', 'x')
  const merged = applyFlags(file, { dataDir: '/data', nodename: 'host-2' })
  t.same(merged.auth.storage, { type: 'sqlite', path: '/data/backend.db' })
  t.equal(merged.auth.clusterName, 'host-2')
})

t.test('data_dir must be absolute; --data-dir is taken from the working directory', async (t) => {
  for (const dir of ['./warren-data', 'warren-data', '../warren', '~/warren'])
    configError(t, `data_dir: ${dir}\n`, `/etc/warren.yaml: line 1: "data_dir" is ${JSON.stringify(dir)}, a relative path: give a directory as an absolute path`)
  const merged = applyFlags(parseConfig('auth_service:\n', 'x'), { dataDir: './warren-data' })
  t.equal(merged.dataDir, join(process.cwd(), 'warren-data'), 'the flag resolved where it was given')
  t.same(merged.auth.storage, { type: 'sqlite', path: join(process.cwd(), 'warren-data', 'backend.db') }, 'and the default storage path with it')
  t.equal(applyFlags(defaultConfig(), { dataDir: '/srv/w/../warren' }).dataDir, '/srv/warren', 'an absolute one normalised')
})

t.test('bad flag values are usage errors', async (t) => {
  const config = defaultConfig()
  t.type(
    errorOf(() => applyFlags(config, { caPin: ['sha256:nothex'] })),
    UsageError,
  )
  t.type(
    errorOf(() => applyFlags(config, { authServer: ['host:port'] })),
    UsageError,
  )
  t.type(
    errorOf(() => applyFlags(config, { dataDir: '' })),
    UsageError,
  )
})

t.test('token values and token files', async (t) => {
  const dir = await tempDir(t)
  t.equal(resolveTokenValue('abc123'), 'abc123', 'a plain value is the token')
  const file = join(dir, 'token')
  await writeFile(file, '  s3cr3t-from-file \n')
  t.equal(resolveTokenValue(file), 's3cr3t-from-file', 'a path is read and trimmed')

  const missing = join(dir, 'nope')
  const err = errorOf(() => resolveTokenValue(missing))
  t.type(err, ConfigError)
  t.equal(err?.message, `cannot read token file ${missing}: no such file`)

  const empty = join(dir, 'empty')
  await writeFile(empty, ' \n')
  t.equal(errorOf(() => resolveTokenValue(empty))?.message, `token file ${empty} is empty`)

  t.equal(errorOf(() => resolveTokenValue(dir))?.message, `cannot read token file ${dir}: it is a directory`)
  t.type(
    errorOf(() => resolveTokenValue('')),
    ConfigError,
  )

  if (process.getuid?.() !== 0) {
    const locked = join(dir, 'locked')
    await writeFile(locked, 's3cr3t')
    await chmod(locked, 0o000)
    const denied = errorOf(() => resolveTokenValue(locked))
    t.equal(denied?.message, `cannot read token file ${locked}: permission denied`)
  }
})

t.test('parseLabels', async (t) => {
  t.same(parseLabels('distro=ubuntu, env=prod'), { distro: 'ubuntu', env: 'prod' })
  t.same(parseLabels(''), {})
  t.same(parseLabels('k='), { k: '' })
  t.same(parseLabels('url=a=b'), { url: 'a=b' })
  for (const bad of ['distro', '=x', 'bad key=x']) {
    const err = errorOf(() => parseLabels(bad))
    t.type(err, UsageError, bad)
  }
  t.equal(errorOf(() => parseLabels('a=1,distro'))?.message, 'invalid label "distro": use key=value, e.g. env=prod')
})
