// `warrenctl tokens add|ls|rm|del` and `nodes add`: invite tokens, and the command that
// joins a host with one. A node token may carry labels that the cluster assigns to each node
// that joins with it (shared/assigned-labels.ts).

import { readFileSync } from 'node:fs'
import { TOKEN_ROLES } from '../../auth/roles.ts'
import { DEFAULTS } from '../../shared/config.ts'
import { describeTtl, formatExpiry, shortDuration } from '../../shared/duration.ts'
import { UsageError, WarrenError } from '../../shared/errors.ts'
import { parseLabels } from '../../shared/labels.ts'
import { caPin } from '../../shared/pin.ts'
import { type ClusterStatus, type ListedToken, MAX_TOKEN_TTL_MS } from '../../shared/protocol/admin.ts'
import { formatLabels, matchesSelectors, parseSelectors } from '../../shared/selectors.ts'
import { hideFlagValue } from '../command-line-secrets.ts'
import { defineFlags } from '../flags.ts'
import { FORMAT_FLAG, formatData } from '../output.ts'
import { formatTable } from '../table.ts'
import type { AdminConnection } from './admin-client.ts'
import { ctlCommand, out } from './ctl-command.ts'

/** The roles a host joins with; sign-up tokens come from users add and users reset. */
const HOST_ROLES = TOKEN_ROLES.filter((role) => role !== 'signup')

interface TokenRequest {
  roles: readonly string[]
  ttlMs: number
  singleUse: boolean
  token?: string
  nodename?: string
  /** Assigned to each node that joins with the token; empty for none. */
  labels: Record<string, string>
}

const TOKEN_FLAGS = defineFlags({
  token: {
    type: 'string',
    placeholder: 'VALUE',
    description: 'use this value (at least 16 characters) instead of a generated one; - reads it from standard input, which no process list shows',
  },
  'single-use': { type: 'boolean', description: 'the first successful join consumes the token' },
  nodename: { type: 'string', placeholder: 'NAME', description: 'the only node name the token joins; it is single-use and replaces the node registered with that name' },
  labels: {
    type: 'list',
    placeholder: 'KEY=VALUE,..',
    description: "labels the cluster assigns to each node that joins with the token (comma-separated, or the flag repeated): they win over the node's own labels of the same keys",
  },
})

/**
 * A chosen token leaves what `ps` shows of this process at once (every local user reads it
 * there); an empty --token or --nodename (an unset shell variable, say) is a mistake, not a
 * request for a generated token or one for any node.
 */
function checkTokenFlags(flags: { token?: string; nodename?: string }): void {
  if (flags.token !== undefined) hideFlagValue('token', 'warrenctl')
  if (flags.token?.trim() === '')
    throw new UsageError('--token is empty: give the token to use (at least 16 characters), - to read it from standard input, or leave --token out for a generated one')
  if (flags.nodename?.trim() === '') throw new UsageError('--nodename is empty: give the name of the node the token joins, or leave --nodename out for a token that joins any node')
}

/** --token's value: read from standard input for `-`. */
function chosenToken(flag: string | undefined): string | undefined {
  if (flag !== '-') return flag
  const token = readFileSync(0, 'utf8').trim()
  if (token === '') throw new UsageError('no token on standard input (--token=-)')
  return token
}

/** A token's --ttl within what the auth server grants (MAX_TOKEN_TTL_MS, 30 days). */
function checkTtl(ttlMs: number): void {
  if (ttlMs > MAX_TOKEN_TTL_MS) {
    throw new UsageError(
      `--ttl ${shortDuration(ttlMs)} is longer than a token may live (${shortDuration(MAX_TOKEN_TTL_MS)}, 30 days): for a token that never expires, use a static token (auth_service.tokens; its long form { roles, token, labels } assigns labels too)`,
    )
  }
}

/**
 * The labels of --labels (none without it), for a token that grants the node role: a token
 * for proxies only would assign them to no one. `rolesFlag` is how the command names the roles.
 */
function requestedLabels(items: readonly string[] | undefined, roles: readonly string[], rolesFlag: string): Record<string, string> {
  if (items === undefined) return {}
  const labels = parseLabels(items.join(','))
  if (Object.keys(labels).length > 0 && !roles.includes('node'))
    throw new UsageError(`--labels assigns labels to the nodes that join with the token, so the token must grant the node role (${rolesFlag}=node)`)
  return labels
}

/** The roles of `tokens add --type`, which it needs. */
function tokenRoles(type: readonly string[] | undefined): readonly string[] {
  if (!type?.length) throw new UsageError('missing --type: the roles the token grants, e.g. --type=node')
  return type
}

/**
 * Where hosts join and people log in: a proxy's web port when there is one (then nodes keep
 * reverse tunnels, and people know only proxies), else the auth server.
 */
export function clusterAddress(admin: AdminConnection, status: ClusterStatus): string {
  return status.proxy_addrs[0] ?? status.public_addrs[0] ?? admin.client.server
}

/**
 * The pins of the host CAs this connection trusts, for the commands it prints: never those of
 * the status answer, which a proxy relays for an editor's warrenctl and could have made up, so
 * that join commands and invitations would pin a CA of its own.
 */
export function trustedPins(admin: AdminConnection): string[] {
  return [...new Set(admin.hostCAs.map((pem) => caPin(pem)))]
}

async function addToken(admin: AdminConnection, request: TokenRequest): Promise<void> {
  const created = await admin.client.call('POST /v1/tokens', {
    body: { roles: request.roles.join(','), ttl_ms: request.ttlMs, single_use: request.singleUse, token: request.token, nodename: request.nodename, labels: request.labels },
  })
  // An auth server from before assigned labels ignores the field: its token would join nodes
  // without the labels asked for, which a role that selects by them would then not reach.
  if (Object.keys(request.labels).length > 0 && created.labels === undefined) {
    await admin.client.call('DELETE /v1/tokens/:token', { params: { token: created.id } })
    throw new WarrenError('the auth server does not assign labels with tokens: upgrade it (the token it made has been deleted)')
  }
  const status = await admin.client.call('GET /v1/status')
  const authServer = clusterAddress(admin, status)
  out(`The invite token: ${created.token}`)
  out(`This token will expire in ${describeTtl(request.ttlMs)}${created.single_use ? ' and can be used once' : ''}`)
  if (created.nodename) out(`It joins only a node named ${created.nodename}, and replaces the node registered with that name`)
  const assigned = formatLabels(created.labels ?? {})
  if (assigned) out(`The node that joins with it is assigned the labels ${assigned}`)
  out('')
  out(`Run this on the new ${created.roles.join(' and ')} to join the cluster:`)
  out('')
  // The token goes in on standard input (a here-document, which no POSIX shell turns into a
  // process), never as an argument: a command line is readable by every local user.
  out('> warren start \\')
  out(`   --roles=${created.roles.join(',')} \\`)
  out('   --token=- \\')
  for (const pin of trustedPins(admin)) out(`   --ca-pin=${pin} \\`)
  out(`   --auth-server=${authServer} <<'EOF'`)
  out(created.token)
  out('EOF')
  out('')
  out('Please note:')
  out('')
  out(`  - This invitation token will expire in ${describeTtl(request.ttlMs)}`)
  out(`  - ${authServer} must be reachable from the new node`)
  if (created.roles.join() === 'node') out('  - For a node that systemd starts at boot, give the same flags and input to "sudo warren install"')
}

export const nodesAdd = ctlCommand({
  name: 'warrenctl nodes add',
  summary: 'create a token and print the command that joins a node with it',
  flags: {
    ttl: { type: 'duration', default: DEFAULTS.nodeTokenTtlMs, description: 'how long the token lives' },
    roles: { type: 'list', values: HOST_ROLES, noun: 'role', default: ['node'], description: 'roles the token grants' },
    ...TOKEN_FLAGS,
  },
  description: 'The join command it prints reads the token from standard input, so that no process list shows it.',
  examples: ['warrenctl nodes add --ttl=5m', 'warrenctl nodes add --labels=env=prod,site=berlin', 'warrenctl nodes add --nodename=pi-1   # replaces the dead device named pi-1'],
  check(flags) {
    checkTtl(flags.ttl)
    checkTokenFlags(flags)
    requestedLabels(flags.labels, flags.roles, '--roles')
  },
  run: (admin, flags) =>
    addToken(admin, {
      roles: flags.roles,
      ttlMs: flags.ttl,
      singleUse: flags['single-use'],
      token: chosenToken(flags.token),
      nodename: flags.nodename,
      labels: requestedLabels(flags.labels, flags.roles, '--roles'),
    }),
})

export const tokensAdd = ctlCommand({
  name: 'warrenctl tokens add',
  summary: 'create a token for any roles, and print the command that joins with it',
  flags: {
    type: { type: 'list', values: HOST_ROLES, noun: 'role', description: 'roles the token grants (required)' },
    ttl: { type: 'duration', default: DEFAULTS.tokenTtlMs, description: 'how long the token lives' },
    ...TOKEN_FLAGS,
  },
  examples: ['warrenctl tokens add --type=proxy', 'warrenctl tokens add --type=node,proxy --ttl=10m --single-use', 'warrenctl tokens add --type=node --labels=env=lab'],
  check(flags) {
    checkTokenFlags(flags)
    requestedLabels(flags.labels, tokenRoles(flags.type), '--type')
    checkTtl(flags.ttl)
  },
  run(admin, flags) {
    const roles = tokenRoles(flags.type)
    return addToken(admin, {
      roles,
      ttlMs: flags.ttl,
      singleUse: flags['single-use'],
      token: chosenToken(flags.token),
      nodename: flags.nodename,
      labels: requestedLabels(flags.labels, roles, '--type'),
    })
  },
})

/** What a selector matches on a token: `type` (each role it grants), `nodename` and `user` when it has them. */
function tokenLabels(t: ListedToken): Record<string, string | string[]> {
  return { type: t.roles, ...(t.nodename ? { nodename: t.nodename } : {}), ...(t.user ? { user: t.user } : {}) }
}

export const tokensLs = ctlCommand({
  name: 'warrenctl tokens ls',
  summary: 'the active tokens: ID, roles, the labels they assign, expiry ("never" for static ones)',
  operands: ['[SELECTOR...]'],
  flags: {
    'with-secrets': { type: 'boolean', description: 'show the values of static tokens (dynamic ones are not recoverable)' },
    format: FORMAT_FLAG,
  },
  description:
    "Selectors (key=value or key=*, all must match) pick tokens by type (a role the token grants: node, proxy, signup...), nodename (the node it is for) or user (whose sign-up it is). In json and yaml a static token's value is null unless --with-secrets.",
  examples: ['warrenctl tokens ls', 'warrenctl tokens ls type=node --format=json', 'warrenctl tokens ls type=signup,user=alice'],
  check(_flags, args) {
    parseSelectors(args)
  },
  async run(admin, flags, args) {
    const selectors = parseSelectors(args)
    const listed = (await admin.client.call('GET /v1/tokens')).tokens.filter((t) => matchesSelectors(selectors, tokenLabels(t)))
    // A secret appears only when asked for, in every format.
    const tokens = listed.map((t) => (flags['with-secrets'] ? t : { ...t, value: null }))
    if (flags.format !== 'text') {
      process.stdout.write(formatData(tokens, flags.format))
      return
    }
    if (tokens.length === 0) {
      out('No active tokens found.')
      return
    }
    const now = Date.now()
    const show = (t: ListedToken) => (flags['with-secrets'] && t.value ? t.value : `${t.id}${t.static ? ' (static)' : ''}`)
    // Labels (those a token assigns to the nodes that join with it) only when a token has
    // any, where Teleport puts them: the usual three columns otherwise.
    const labelled = tokens.some((t) => Object.keys(t.labels ?? {}).length > 0)
    const rows = tokens.map((t) => [show(t), tokenType(t), ...(labelled ? [formatLabels(t.labels ?? {})] : []), formatExpiry(t.expires ?? undefined, now)])
    out(formatTable(['Token', 'Type', ...(labelled ? ['Labels'] : []), 'Expiry Time (UTC)'], rows))
  },
})

/** The Type column: the roles a token grants, or Signup and whose it is. */
function tokenType(t: ListedToken): string {
  if (t.roles.includes('signup')) return `Signup (for ${t.user ?? '?'})`
  return t.roles.join(',') + (t.single_use ? ' (single use)' : '') + (t.nodename ? ` (for ${t.nodename})` : '')
}

function deleteToken(verb: 'rm' | 'del') {
  return ctlCommand({
    name: `warrenctl tokens ${verb}`,
    summary: `delete a token given its value or its listed ID${verb === 'del' ? ' (as tokens rm)' : ''}`,
    operands: ['TOKEN'],
    flags: {},
    examples: [`warrenctl tokens ${verb} 3f2a9c81b0d4`],
    async run(admin, _flags, args) {
      await admin.client.call('DELETE /v1/tokens/:token', { params: { token: args[0] } })
      out(`Token ${args[0]} has been deleted`)
    },
  })
}

export const tokensRm = deleteToken('rm')
export const tokensDel = deleteToken('del')
