// Warren's configuration keys, each declared once: its name in the file, what it accepts,
// its default and what it does. WarrenConfig, the type the rest of the code reads, is
// derived from this schema. README "Configuration" and packaging/examples show the file;
// shared/config-keys.test.ts names the code that reads each key.

import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { joinHostPort, splitHostPort } from './address.ts'
import { clusterNameProblem } from './cluster-name.ts'
import { LABEL_LIMITS, labelKeyProblem, labelValueProblem } from './labels.ts'
import { logFormatFromEnv, logLevelFromEnv } from './log.ts'
import { parsePin } from './pin.ts'
import {
  boolean,
  type Check,
  checkWith,
  converted,
  count,
  duration,
  type Infer,
  key,
  list,
  map,
  marker,
  oneOf,
  section,
  shortOrLong,
  string,
  variants,
} from './yaml-schema/index.ts'

/** Values other code needs as well: ports, intervals, file names. */
export const DEFAULTS = {
  dataDir: '/var/lib/warren',
  authPort: 3025,
  webPort: 3080,
  tunnelPort: 3024,
  // A node that joined an auth server directly is dialled by the proxies here (as Teleport's
  // nodes are); a node in tunnel mode listens nowhere.
  sshPort: 3022,
  heartbeatIntervalMs: 5000,
  heartbeatTtlMs: 30000,
  // Far below Teleport's 5 minutes: NATs and load balancers drop flows idle for much less.
  keepaliveIntervalMs: 15000,
  nodeTokenTtlMs: 30 * 60e3,
  tokenTtlMs: 60 * 60e3,
  storageFile: 'backend.db',
  acmeHttpPort: 80,
  version: 'v1',
} as const

/** The shortest certificate lifetime the config accepts. */
export const MIN_CERT_TTL_MS = 10_000

/** The fewest characters a join token may have, generated, chosen or static. */
export const MIN_TOKEN_LENGTH = 16

const HOUR_MS = 3600e3

/**
 * The longest any duration of the file may be, 10 years: beyond it the expiry it gives a
 * certificate or a stored record is no longer a date (nor an etcd lease) that works.
 */
const MAX_DURATION_MS = 10 * 8760 * HOUR_MS

// ---------------------------------------------------------------------------------------
// Values

const address = string(checkWith(splitHostPort))
/** Why `value` is not HOST:PORT with a port, or undefined (for keys and their flags alike). */
export function addressWithPortProblem(value: string): string | undefined {
  const problem = checkWith(splitHostPort)(value)
  if (problem) return problem
  return splitHostPort(value).port === undefined ? `must include a port, e.g. 127.0.0.1:8080` : undefined
}
const addressWithPort = string(addressWithPortProblem)
const addresses = list(address, { single: true })
/** Where one thing is reached: a list of one is accepted, as for the other public addresses. */
const oneAddress = list(address, { single: true, max: 1 })

/** Pins are kept as parsePin writes them (lower case), so they compare as strings. */
const caPin = converted(string(checkWith(parsePin)), parsePin)

/**
 * A certificate's lifetime: renewals run at two thirds of it, over the network and with
 * retries, which need a few seconds (tests run several lifetimes of 15 s in real time).
 */
const lifetime = duration({ min: MIN_CERT_TTL_MS, max: MAX_DURATION_MS })

/** How long something is kept or may wait (node_ttl, recovery_window, audit retention). */
const longDuration = duration({ max: MAX_DURATION_MS })

/**
 * Each end of a tunnel pings the other at this interval (setInterval, whose longest delay is
 * about 24.8 days: a longer one fires every millisecond). A ping every millisecond would be a
 * storm; one an hour apart outlasts every NAT's idle timeout, and a dead peer is noticed only
 * within two intervals.
 */
const keepalive = duration({ min: 1000, max: HOUR_MS })

/**
 * Direct nodes and proxies report every heartbeatIntervalMs: a shorter TTL would put nodes
 * offline between two reports. An hour of a silent node still shown online is the most that
 * makes sense (and it becomes an etcd lease).
 */
const heartbeatTtl = duration({
  min: DEFAULTS.heartbeatIntervalMs + 1000,
  max: HOUR_MS,
  minReason: `longer than the ${DEFAULTS.heartbeatIntervalMs / 1000}s between the heartbeats of nodes and proxies`,
})

/** A string that may not be empty: an empty path is no path, and not the default either. */
const nonEmpty =
  (what: string): Check =>
  (value) =>
    value.trim() === '' ? `is empty: give ${what}, or leave the key out` : undefined

/**
 * A path that does not depend on the directory a command runs in: a relative one would make
 * the same file name another database from each working directory (another cluster).
 */
const absolutePath =
  (what: string): Check =>
  (value) =>
    nonEmpty(what)(value) ?? (isAbsolute(value) ? undefined : `is ${JSON.stringify(value)}, a relative path: give ${what} as an absolute path`)

const ipOrCidr = string((value) => {
  const [ip, bits, extra] = value.split('/')
  const family = isIP(ip)
  const maxBits = family === 6 ? 128 : 32
  const bitsOk = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= maxBits)
  return family === 0 || !bitsOk || extra !== undefined ? 'must be an IP address or a CIDR range, e.g. 10.0.0.0/24' : undefined
})

/** A token's value, or the path of the file that holds it: its complaint never repeats it, a secret. */
function tokenValueProblem(token: string): string | undefined {
  if (!token.startsWith('/') && token.length < MIN_TOKEN_LENGTH) {
    return `holds a token shorter than ${MIN_TOKEN_LENGTH} characters, which could be guessed: use a longer one, e.g. from "openssl rand -hex 16"`
  }
  return undefined
}

/** What a static token's role looks like here; auth/tokens.ts knows which roles exist. */
const roleWord = (role: string) => /^[a-z]+$/.test(role)

// ROLES:VALUE. A token in a file is read (and its length checked) when the auth server starts.
const staticTokenLine = string((value) => {
  const colon = value.indexOf(':')
  const roles = value
    .slice(0, colon)
    .split(',')
    .map((role) => role.trim())
  const token = value.slice(colon + 1).trim()
  const ok = colon > 0 && token !== '' && roles.every(roleWord)
  if (!ok) return 'must be ROLES:TOKEN, e.g. "node:/var/lib/warren/node-token" (a token starting with / is a file), or a section with roles, token and labels'
  return tokenValueProblem(token)
})

const nodeLabels = map(string(labelValueProblem), { checkKey: labelKeyProblem, maxKeys: LABEL_LIMITS.maxLabels })

// The long form, for a token that also assigns labels (as `warrenctl tokens add --labels`).
const staticTokenSection = section({
  roles: key(
    'roles',
    list(
      string((role) => (roleWord(role) ? undefined : 'must be a role, e.g. node')),
      { single: true, min: 1 },
    ),
    {
      required: true,
      doc: 'the roles the token grants, e.g. [node]',
    },
  ),
  token: key(
    'token',
    string((token) => (token.trim() === '' ? 'is empty' : tokenValueProblem(token.trim()))),
    {
      required: true,
      doc: 'the token, or the path of the file that holds it (starting with /)',
    },
  ),
  labels: key('labels', nodeLabels, {
    default: {},
    doc: 'labels the cluster assigns to every node that joins with it, over those the node reports',
  }),
})

const staticToken = shortOrLong(staticTokenLine, staticTokenSection)

const portName = string((value) => (/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value) ? undefined : 'must be letters, digits, ".", "_" or "-", e.g. webui'))

const listenOn = (port: number) => joinHostPort('0.0.0.0', port)

// A role's section written in the file turns the role on unless it says `enabled: false`.
const onWhenWritten = ({ written }: { written: boolean }) => written

// ---------------------------------------------------------------------------------------
// The keys

const auth = section({
  enabled: key('enabled', boolean, {
    default: onWhenWritten,
    doc: 'run the auth server when --roles is not given; on when the section is written',
  }),
  listenAddr: key('listen_addr', address, {
    default: listenOn(DEFAULTS.authPort),
    doc: 'where the auth server listens (HTTPS: joins, renewals, the admin API)',
  }),
  publicAddrs: key('public_addr', addresses, {
    default: [],
    doc: 'further names of the auth server, written into its certificate',
  }),
  clusterName: key('cluster_name', string(clusterNameProblem), {
    default: ({ config }) => config.nodename,
    doc: "the cluster's name, in every certificate; fixed at the first start (default: the nodename)",
  }),
  tokens: key('tokens', list(staticToken), {
    default: [],
    doc: 'static join tokens, ROLES:TOKEN (a token starting with / is a file), or { roles, token, labels }',
  }),
  assignedLabelKeys: key('assigned_label_keys', list(string(labelKeyProblem), { max: LABEL_LIMITS.maxLabels }), {
    default: [],
    doc: "label keys a node carries only as assigned (tokens' labels, warrenctl nodes label): its own values for them are ignored; auth servers sharing a backend keep every key any of them lists",
  }),
  storage: key(
    'storage',
    variants(
      'storage',
      'sqlite',
      {
        sqlite: {
          path: key('path', string(absolutePath('the SQLite database')), {
            default: ({ config }) => join(config.dataDir, DEFAULTS.storageFile),
            doc: 'the SQLite database, an absolute path (default: backend.db in data_dir)',
          }),
        },
        etcd: {
          peers: key('peers', list(string(), { single: true, min: 1 }), {
            required: true,
            doc: "etcd's client URLs; one not on loopback needs tls (or insecure_plaintext)",
          }),
          prefix: key('prefix', string(), {
            default: '/warren/',
            doc: "the key prefix of this cluster's data",
          }),
          tls: key(
            'tls',
            section({
              caFile: key('ca_file', string(), {
                doc: "the CA of etcd's server certificates (default: the system's CAs)",
              }),
              certFile: key('cert_file', string(), {
                doc: 'client certificate, for etcd started with --client-cert-auth',
              }),
              keyFile: key('key_file', string(), {
                doc: "the client certificate's key",
              }),
            }),
            {
              optional: true,
              doc: 'TLS to etcd; a bare host:port peer gets https:// when written, else http://',
            },
          ),
          insecurePlaintext: key('insecure_plaintext', boolean, {
            doc: "true: reach peers not on loopback without TLS, the CAs' private keys crossing the network readable (the auth server warns, and its status says so)",
          }),
        },
      },
      'the backend: sqlite (one auth server) or etcd (several sharing one store)',
    ),
    {
      doc: 'where the auth server keeps the cluster state',
    },
  ),
  joinRateLimit: key(
    'join_rate_limit',
    section({
      burst: key('burst', count, {
        default: 10,
        doc: 'failed joins an address may make at once',
      }),
      perMinute: key('per_minute', count, {
        default: 30,
        doc: 'failed joins an address may make per minute after the burst',
      }),
    }),
    {
      doc: 'how fast one address may fail to join or recover (guessing tokens)',
    },
  ),
  heartbeatTtlMs: key('heartbeat_ttl', heartbeatTtl, {
    default: DEFAULTS.heartbeatTtlMs,
    doc: 'how long a heartbeat keeps a node online (6s to 1h); proxies report presence at a third of it',
  }),
  nodeTtlMs: key('node_ttl', longDuration, {
    default: 720 * HOUR_MS,
    doc: 'how long an offline node stays in nodes ls --all, unless a lock or removal names it',
  }),
  hostCertTtlMs: key('host_cert_ttl', lifetime, {
    default: 720 * HOUR_MS,
    doc: "nodes' and proxies' certificates, renewed when two thirds have passed",
  }),
  adminCertTtlMs: key('admin_cert_ttl', lifetime, {
    default: 168 * HOUR_MS,
    doc: "warrenctl's admin identity in the data dir, rewritten likewise",
  }),
  recoveryWindowMs: key('recovery_window', longDuration, {
    default: 8760 * HOUR_MS,
    doc: 'how long after its certificate expired a device may still recover it by proving its key',
  }),
  audit: key(
    'audit',
    section({
      retentionMs: key('retention', longDuration, {
        default: 90 * 24 * HOUR_MS,
        doc: 'how long audit events are kept in the backend',
      }),
      file: key('file', string(nonEmpty('a file')), { doc: 'a file that also gets every audit event as one JSON line, for log shippers' }),
    }),
    { doc: 'the audit trail: who did what (warrenctl audit ls)' },
  ),
  recording: key('recording', oneOf('node', 'off'), {
    default: 'node',
    doc: 'interactive sessions recorded on the node and uploaded here (node), or not kept (off)',
  }),
  recordingDir: key('recording_dir', string(nonEmpty('a directory')), { doc: 'where session recordings are stored (default: recordings in data_dir)' }),
})

const proxy = section({
  enabled: key('enabled', boolean, {
    default: onWhenWritten,
    doc: 'run the proxy when --roles is not given; on when the section is written',
  }),
  webListenAddr: key('web_listen_addr', address, {
    default: listenOn(DEFAULTS.webPort),
    doc: 'the web port: HTTPS API, discovery and user connections',
  }),
  tunnelListenAddr: key('tunnel_listen_addr', address, {
    default: listenOn(DEFAULTS.tunnelPort),
    doc: "nodes' tunnels; equal to web_listen_addr, one port serves both",
  }),
  publicAddrs: key('public_addr', addresses, {
    default: [],
    doc: "the proxy's public names: in its certificates, and the web address it reports",
  }),
  tunnelPublicAddrs: key('tunnel_public_addr', oneAddress, {
    default: [],
    doc: 'where nodes dial the tunnel (a load balancer), if not the tunnel port of the address they used',
  }),
  trustedLoadBalancers: key('trusted_load_balancers', list(ipOrCidr, { single: true }), {
    default: [],
    doc: 'IPs or CIDR ranges whose PROXY protocol headers are believed',
  }),
  acme: key(
    'acme',
    section({
      enabled: key('enabled', boolean, {
        default: false,
        doc: 'get the web certificate from an ACME CA for the DNS names of public_addr',
      }),
      email: key('email', string(), {
        doc: 'the ACME account contact',
      }),
      uri: key('uri', string(), {
        default: 'https://acme-v02.api.letsencrypt.org/directory',
        doc: "the ACME directory (default: Let's Encrypt)",
      }),
      caFile: key('ca_file', string(), {
        doc: "extra roots (PEM, one or more) to trust for the ACME server's HTTPS and for the certificates it issues: a private or test CA",
      }),
      httpListenAddr: key('http_listen_addr', address, {
        doc: 'a plain HTTP listener (port 80 of the public names) that answers HTTP-01 challenges',
      }),
    }),
    { doc: "the web port's certificate from an ACME CA (Let's Encrypt)" },
  ),
})

const ssh = section({
  // Not written (undefined): on, as in Teleport, unless `warren start --configured-roles`
  // (the proxy unit), which runs only the roles whose sections the file writes.
  enabled: key('enabled', boolean, {
    default: ({ written }) => (written ? true : undefined),
    doc: 'run the node role when --roles is not given; on unless false, as in Teleport (with --configured-roles, only when the section is written)',
  }),
  listenAddr: key('listen_addr', address, {
    default: listenOn(DEFAULTS.sshPort),
    doc: 'where a direct node serves proxies (mutual TLS); unused in tunnel mode',
  }),
  publicAddr: key(
    'public_addr',
    converted(oneAddress, (items) => items[0]),
    {
      doc: 'where proxies dial a direct node, if not its listen port on the address the auth server sees',
    },
  ),
  forwardPorts: key(
    'forward_ports',
    list(
      section({
        name: key('name', portName, {
          required: true,
          doc: 'the name users reach it by (warren proxy port NODE NAME)',
        }),
        addr: key('addr', addressWithPort, {
          required: true,
          doc: 'the host:port on the node it reaches',
        }),
      }),
      { uniqueBy: 'name' },
    ),
    { default: [], doc: 'local TCP ports the node declares' },
  ),
  portForwarding: key('port_forwarding', oneOf('declared', 'any', 'off'), {
    // A user who may log in to a device should not thereby reach every host on its network.
    default: 'declared',
    doc: 'where ssh -L may go: the declared forward_ports, any host:port the node reaches, or nowhere',
  }),
  sftpServer: key(
    'sftp_server',
    string((value) => (value === 'auto' || value === 'builtin' || value.startsWith('/') ? undefined : 'must be auto, builtin or the absolute path of an sftp-server')),
    {
      default: 'auto',
      doc: "what serves scp and sftp: OpenSSH's sftp-server if the device has one, else Warren's own (auto); always Warren's own (builtin); or an sftp-server's path",
    },
  ),
  // The defaults and why: defaultSshLimits in agent/ssh-server.ts.
  limits: key(
    'limits',
    section({
      maxUnauthenticated: key('max_unauthenticated', count, { default: 32, doc: 'SSH connections not yet logged in at once, shared between users; more are closed' }),
      loginGraceMs: key('login_grace', duration({ min: 1000, max: HOUR_MS }), { default: 30_000, doc: 'how long a connection may take to log in' }),
      maxConnectionsPerUser: key('max_connections_per_user', count, { default: 16, doc: 'logged-in connections one user may hold at once' }),
      maxSessionsPerConnection: key('max_sessions_per_connection', count, { default: 10, doc: "sessions (shell, exec, sftp) at once on one connection, as OpenSSH's MaxSessions" }),
      maxForwardsPerConnection: key('max_forwards_per_connection', count, { default: 64, doc: 'forwarded connections (-L, -R, -A) at once on one connection' }),
    }),
    { doc: 'what one user or connection may hold on this node (read at each connection: a reload applies to new ones)' },
  ),
})

export const CONFIG_SCHEMA = section(
  {
    version: marker('version', oneOf(DEFAULTS.version), 'the format of this file; v1 is the only one'),
    dataDir: key('data_dir', string(absolutePath('a directory')), {
      default: DEFAULTS.dataDir,
      doc: 'where keys, certificates and state are kept, an absolute path',
    }),
    nodename: key('nodename', string(), {
      default: () => hostname(),
      doc: "this host's name in the cluster (default: the host name)",
    }),
    authToken: key('auth_token', string(), {
      doc: 'the join token, or a file holding it (a value starting with /); needed until the first join',
    }),
    caPins: key('ca_pin', list(caPin, { single: true }), {
      default: [],
      doc: 'sha256:... pins of the cluster CA, checked when joining',
    }),
    authServers: key('auth_servers', oneAddress, {
      default: [],
      doc: "where to join: the auth server, or a proxy's web port",
    }),
    labels: key('labels', nodeLabels, {
      default: {},
      doc: "this node's labels, shown by nodes ls",
    }),
    log: key(
      'log',
      section({
        level: key('level', oneOf('debug', 'info', 'warn', 'error'), {
          default: () => logLevelFromEnv() ?? 'info',
          doc: 'the least severe entries logged (default: WARREN_LOG_LEVEL, else info)',
        }),
        format: key('format', oneOf('text', 'json'), {
          default: () => logFormatFromEnv() ?? 'text',
          doc: 'text lines or JSON objects (default: WARREN_LOG_FORMAT, else text)',
        }),
      }),
      { doc: 'the log on standard error' },
    ),
    diagAddr: key('diag_addr', addressWithPort, {
      doc: 'HOST:PORT of plain-HTTP diagnostics (/metrics, /healthz, /readyz), e.g. 127.0.0.1:3000; off when unset',
    }),
    keepaliveIntervalMs: key('keepalive_interval', keepalive, {
      default: DEFAULTS.keepaliveIntervalMs,
      doc: 'how often each end of a tunnel pings the other (1s to 1h); a silent peer is noticed within two intervals',
    }),
    auth: key('auth_service', auth, { doc: 'the auth server role' }),
    proxy: key('proxy_service', proxy, {
      doc: 'the proxy role',
    }),
    ssh: key('ssh_service', ssh, {
      doc: 'the node role: the SSH server and the ports it forwards',
    }),
  },
  {
    retired: {
      advertise_ip:
        "it no longer has any effect (a host's certificate names what the auth server grants, and proxies " +
        'dial a direct node at ssh_service.public_addr, else the address the auth server sees); remove it',
    },
    example: 'auth_service',
  },
)

export type WarrenConfig = Infer<typeof CONFIG_SCHEMA>
export type AuthConfig = WarrenConfig['auth']
export type StorageConfig = AuthConfig['storage']
export type ProxyConfig = WarrenConfig['proxy']
export type AcmeConfig = ProxyConfig['acme']
export type SshConfig = WarrenConfig['ssh']
export type ForwardPort = SshConfig['forwardPorts'][number]
/**
 * Where a user's `ssh -L` may go from the node: only the `forward_ports` it declares (by
 * their host:port), any host:port the node can reach, or nowhere.
 */
export type PortForwarding = SshConfig['portForwarding']
