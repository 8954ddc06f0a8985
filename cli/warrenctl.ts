#!/usr/bin/env node
// `warrenctl`: cluster administration through the auth server's admin API.

import { connectAdmin, type AdminConnection } from './admin-client.ts'
import { runMain } from './main.ts'
import { DEFAULTS } from '../shared/config.ts'
import { describeTtl, formatDuration, formatExpiry, formatUtc } from '../shared/duration.ts'
import { UsageError, WarrenError } from '../shared/errors.ts'
import type { CAStatus, ListedNode, PresentNode } from '../shared/protocol/admin.ts'
import { parseFlags, type FlagSpec } from './flags.ts'
import { formatTable } from './table.ts'
import { printable } from '../shared/printable.ts'
import { signUser } from './sign.ts'
import { LOCK_COMMANDS, LOCK_USAGE } from './locks.ts'

const GLOBAL_FLAGS: FlagSpec = {
  'data-dir': { type: 'string', description: 'the auth server\'s data dir, where the admin identity is' },
  config: { type: 'string', description: 'the auth server\'s config file (for its data_dir)' },
  identity: { type: 'string', description: 'path to an admin identity file' },
  'auth-server': { type: 'string', description: 'HOST:PORT of the auth server (default: from the identity)' },
}

const USAGE = `Usage: warrenctl <command> [flags]

Commands:
  status                         cluster name, version, CAs and CA pins
  nodes add [--ttl=30m] [--roles=node] [--token=VALUE] [--single-use] [--nodename=NAME]
                                 create a token and print the command that joins a node
                                 (--nodename: only that name, replacing the node that has it)
  nodes ls [--all]               nodes whose heartbeat is fresh (--all: offline and removed ones too,
                                 with when they were last seen, version, certificate expiry, proxies)
  nodes rm NODE                  remove a node (name or host ID): its certificates are refused everywhere
  tokens add --type=node [--ttl=1h] [--token=VALUE] [--single-use] [--nodename=NAME]
  tokens ls [--with-secrets]     active tokens
  tokens rm TOKEN | tokens del TOKEN
                                 delete a token by value or by its listed ID
  users add NAME --logins=root,pi
                                 add a user who may log in as these OS accounts
  users ls                       users and their logins
  auth sign --user=NAME [--ttl=1h] --out=DIR [--format=openssh]
                                 short-lived certificates for a user, with known_hosts
  auth rotate [--type=host|user] [--grace-period=30h] [--manual --phase=init|update_clients|update_servers|standby|rollback]
                                 replace a CA without downtime
${LOCK_USAGE}

Flags for every command: --data-dir, --config, --identity, --auth-server`

export interface Command {
  flags: FlagSpec
  run: (admin: AdminConnection, flags: Record<string, any>, args: string[]) => Promise<void>
  args: number
}

const out = (text: string) => process.stdout.write(text + '\n')

const address = (n: PresentNode | ListedNode) => (n.tunnel ? '⟵ Tunnel' : n.addr || '-')
const labels = (n: PresentNode | ListedNode) => Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(',')

/** `nodes ls --all`: online, offline and removed nodes, with what tells an operator whether a device is healthy. */
async function listAllNodes(admin: AdminConnection): Promise<void> {
  const listing = await admin.client.call('GET /v1/nodes', { query: { all: true } })
  if (!('now' in listing)) throw new WarrenError('the auth server does not list offline and removed nodes: upgrade it')
  const { now, nodes } = listing
  const rows = nodes.map((n) => [
    n.nodename,
    n.host_id,
    address(n),
    n.status,
    n.last_seen ? `${formatUtc(n.last_seen)} (${formatDuration(now - n.last_seen)} ago)` : '-',
    n.version ?? '-',
    n.cert_expires ? formatExpiry(n.cert_expires, now) : '-',
    n.proxies ? `${n.proxies.holding}/${n.proxies.live}` : '-',
    labels(n),
  ])
  out(formatTable(['Node Name', 'Node ID', 'Address', 'Status', 'Last Seen', 'Version', 'Cert Expires', 'Proxies', 'Labels'], rows))
}

async function addToken(admin: AdminConnection, flags: Record<string, any>, roles: string, defaultTtl: number): Promise<void> {
  const ttlMs: number = flags.ttl ?? defaultTtl
  const created = await admin.client.call('POST /v1/tokens', { body: { roles, ttl_ms: ttlMs, single_use: flags['single-use'] === true, token: flags.token, nodename: flags.nodename } })
  const status = await admin.client.call('GET /v1/status')
  // Nodes join through a proxy's web port when there is one (then they keep reverse tunnels).
  const authServer = status.proxy_addrs[0] ?? status.public_addrs[0] ?? admin.client.server
  out(`The invite token: ${created.token}`)
  out(`This token will expire in ${describeTtl(ttlMs)}${created.single_use ? ' and can be used once' : ''}`)
  if (created.nodename) out(`It joins only a node named ${created.nodename}, and replaces the node registered with that name`)
  out('')
  out(`Run this on the new ${created.roles.join(' and ')} to join the cluster:`)
  out('')
  // The token goes in on standard input (a here-document, which no POSIX shell turns into a
  // process), never as an argument: a command line is readable by every local user.
  out('> warren start \\')
  out(`   --roles=${created.roles.join(',')} \\`)
  out('   --token=- \\')
  for (const pin of status.host_ca.pins) out(`   --ca-pin=${pin} \\`)
  out(`   --auth-server=${authServer} <<'EOF'`)
  out(created.token)
  out('EOF')
  out('')
  out('Please note:')
  out('')
  out(`  - This invitation token will expire in ${describeTtl(ttlMs)}`)
  out(`  - ${authServer} must be reachable from the new node`)
  if (created.roles.join() === 'node') out('  - For a node that systemd starts at boot, give the same flags and input to "sudo warren install"')
}

const tokenFlags: FlagSpec = {
  ttl: { type: 'duration', description: 'how long the token lives' },
  token: { type: 'string', description: 'use this value instead of a generated one' },
  'single-use': { type: 'boolean', description: 'the first successful join consumes the token' },
  nodename: { type: 'string', description: 'the only node name the token joins; it replaces the node registered with that name' },
}

async function deleteToken(admin: AdminConnection, _flags: Record<string, any>, args: string[]): Promise<void> {
  await admin.client.call('DELETE /v1/tokens/:token', { params: { token: args[0] } })
  out(`Token ${args[0]} has been deleted`)
}

const COMMANDS: Record<string, Command> = {
  status: {
    flags: {},
    args: 0,
    async run(admin) {
      const status = await admin.client.call('GET /v1/status')
      const rotated = (ca: CAStatus) => {
        if (ca.rotation) return `rotation in progress: phase ${ca.rotation.phase} (${ca.rotation.mode}), since ${formatUtc(ca.rotation.phase_started)}`
        return ca.last_rotated ? `rotated ${formatUtc(ca.last_rotated)}` : 'never updated'
      }
      const rows = [
        ['Cluster', status.cluster_name],
        ['Version', status.version],
        ['Host CA', rotated(status.host_ca)],
        ['User CA', rotated(status.user_ca)],
        ...status.host_ca.pins.map((pin) => ['CA pin', pin]),
      ]
      const width = Math.max(...rows.map(([name]) => name.length))
      for (const [name, value] of rows) out(`${name.padEnd(width)}  ${printable(value)}`)
    },
  },
  'nodes add': {
    flags: { ...tokenFlags, roles: { type: 'string', default: 'node', description: 'roles the token grants' } },
    args: 0,
    run: (admin, flags) => addToken(admin, flags, flags.roles, DEFAULTS.nodeTokenTtlMs),
  },
  'nodes ls': {
    flags: { all: { type: 'boolean', description: 'also nodes that are offline or removed, with Last Seen, Version, Cert Expires and Proxies' } },
    args: 0,
    async run(admin, flags) {
      if (flags.all) return listAllNodes(admin)
      const { nodes } = await admin.client.call('GET /v1/nodes')
      const rows = nodes.map((n) => [n.nodename, n.host_id, address(n), labels(n)])
      out(formatTable(['Node Name', 'Node ID', 'Address', 'Labels'], rows))
    },
  },
  'nodes rm': {
    flags: {},
    args: 1,
    async run(admin, _flags, args) {
      const removed = await admin.client.call('DELETE /v1/nodes/:node', { params: { node: args[0] } })
      out(`Node ${removed.nodename} (${removed.host_id}, roles ${removed.roles.join(',')}) has been removed: its registration, its name and its presence`)
    },
  },
  'tokens add': {
    flags: { ...tokenFlags, type: { type: 'string', description: 'roles the token grants, e.g. node or node,proxy' } },
    args: 0,
    run(admin, flags) {
      if (!flags.type) throw new UsageError('missing --type: the roles the token grants, e.g. --type=node')
      return addToken(admin, flags, flags.type, DEFAULTS.tokenTtlMs)
    },
  },
  'tokens ls': {
    flags: { 'with-secrets': { type: 'boolean', description: 'show the values of static tokens' } },
    args: 0,
    async run(admin, flags) {
      const { tokens } = await admin.client.call('GET /v1/tokens')
      if (tokens.length === 0) {
        out('No active tokens found.')
        return
      }
      const now = Date.now()
      const show = (t: (typeof tokens)[number]) => (flags['with-secrets'] && t.value ? t.value : `${t.id}${t.static ? ' (static)' : ''}`)
      const rows = tokens.map((t) => [show(t), t.roles.join(',') + (t.single_use ? ' (single use)' : '') + (t.nodename ? ` (for ${t.nodename})` : ''), formatExpiry(t.expires ?? undefined, now)])
      out(formatTable(['Token', 'Type', 'Expiry Time (UTC)'], rows))
    },
  },
  'users add': {
    flags: { logins: { type: 'list', description: 'OS accounts the user may log in as' } },
    args: 1,
    async run(admin, flags, args) {
      if (!flags.logins?.length) throw new UsageError('missing --logins: the OS accounts this user may log in as, e.g. --logins=root,pi')
      const user = await admin.client.call('POST /v1/users', { body: { name: args[0], logins: flags.logins } })
      out(`User ${user.name} has been added with logins ${user.logins.join(',')}`)
    },
  },
  'users ls': {
    flags: {},
    args: 0,
    async run(admin) {
      const { users } = await admin.client.call('GET /v1/users')
      out(formatTable(['User', 'Logins'], users.map((u) => [u.name, u.logins.join(',')])))
    },
  },
  'auth sign': {
    flags: {
      user: { type: 'string', description: 'the user to sign for' },
      ttl: { type: 'duration', default: '1h', description: 'how long the certificates live (at most 30h)' },
      out: { type: 'string', description: 'directory to write the credentials to' },
      format: { type: 'string', default: 'warren', description: 'warren, or openssh (adds an ssh_config for a stock ssh client)' },
      proxy: { type: 'string', description: 'HOST:PORT of the proxy to use (default: a live proxy\'s address)' },
    },
    args: 0,
    run: (admin, flags) => signUser(admin, flags),
  },
  'auth rotate': {
    flags: {
      type: { type: 'string', default: 'host', description: 'host or user' },
      'grace-period': { type: 'duration', default: '30h', description: 'how long an automatic rotation takes' },
      manual: { type: 'boolean', description: 'step through the phases yourself with --phase' },
      phase: { type: 'string', description: 'init, update_clients, update_servers, standby or rollback (with --manual)' },
    },
    args: 0,
    async run(admin, flags) {
      if (flags.type !== 'host' && flags.type !== 'user') throw new UsageError(`unknown --type "${flags.type}": use host or user`)
      if (flags.manual && !flags.phase) throw new UsageError('--manual needs --phase=init|update_clients|update_servers|standby|rollback')
      if (!flags.manual && flags.phase) throw new UsageError('--phase goes with --manual')
      const result = await admin.client.call('POST /v1/rotate', { body: { type: flags.type, manual: flags.manual, phase: flags.phase, grace_period_ms: flags['grace-period'] } })
      out(flags.manual
        ? `The ${result.type} CA is now in phase ${result.phase}.`
        : `Rotation of the ${result.type} CA started (phase ${result.phase}); it completes in ${describeTtl(flags['grace-period'])}. Follow it with "warrenctl status".`)
    },
  },
  'tokens rm': { flags: {}, args: 1, run: deleteToken },
  'tokens del': { flags: {}, args: 1, run: deleteToken },
  ...LOCK_COMMANDS,
}

export async function warrenctl(argv: string[]): Promise<number | void> {
  if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help') {
    out(USAGE)
    return argv.length === 0 ? 2 : 0
  }
  // Two words first: "lock ls" is a command of its own, not "lock" with an argument.
  const twoWords = `${argv[0]} ${argv[1] ?? ''}`.trim()
  const name = COMMANDS[twoWords] ? twoWords : COMMANDS[argv[0]] ? argv[0] : twoWords
  const command = COMMANDS[name]
  if (!command) throw new UsageError(`unknown command "warrenctl ${name}"\n\n${USAGE}`)
  const rest = argv.slice(name.split(' ').length)
  const { flags, args } = parseFlags(rest, { ...GLOBAL_FLAGS, ...command.flags }, `warrenctl ${name}`)
  if (args.length < command.args) throw new UsageError(`"warrenctl ${name}" needs ${name.startsWith('users') ? 'a NAME' : name.startsWith('nodes') ? 'a NODE' : name.startsWith('lock') ? 'an ID' : 'a TOKEN'} argument`)
  if (args.length > command.args) throw new UsageError(`unexpected argument "${args[command.args]}" for "warrenctl ${name}"`)
  const admin = connectAdmin(flags)
  try {
    await command.run(admin, flags, args)
  } finally {
    await admin.client.close()
  }
}

if (import.meta.main) await runMain(warrenctl, process.argv.slice(2))
