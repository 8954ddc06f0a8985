// `warren start`: runs the roles this process holds (auth, proxy, node) until SIGTERM or SIGINT.

import { accessSync, constants, readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { isSea } from 'node:sea'
import { nodeStatus } from '../agent/status.ts'
import { authStatus } from '../auth/status.ts'
import { proxyStatus } from '../proxy/status.ts'
import { applyFlags, DEFAULTS, defaultConfig, loadConfigFile, parseLabels, type WarrenConfig } from '../shared/config.ts'
import { secureDataDir, secureRecordingDir, secureStorageDir } from '../shared/data-dir.ts'
import { lockDataDir } from '../shared/data-dir-lock.ts'
import type { DiagServer } from '../shared/diag-server.ts'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { startedWithWarrenExecArgv, WARREN_EXEC_ARGV } from '../shared/heap-tuning.ts'
import type { IdentityKeeper } from '../shared/identity-keeper.ts'
import { identityExists } from '../shared/identity-store.ts'
import { createLogger, type Logger } from '../shared/log.ts'
import { withMallocArenas } from '../shared/malloc-arenas.ts'
import { deferOptimisingCompilers } from '../shared/optimising-compilers.ts'
import { parsePin } from '../shared/pin.ts'
import { VERSION } from '../shared/version.ts'
import { defineCommand } from './command.ts'
import { hideFlagValue } from './command-line-secrets.ts'
import { defineFlags, type FlagValues } from './flags.ts'
import { settleJoinToken, tokenOnCommandLine, tokenOrigin, withoutToken } from './join-token.ts'
import { load } from './load.ts'
import { keysNeedingRestart } from './reload-changes.ts'
import { StatusEndpoint } from './status-endpoint.ts'
import { commit } from './version.ts'

const ROLES = ['auth', 'proxy', 'node'] as const

export const START_FLAGS = defineFlags({
  roles: {
    type: 'list',
    values: ROLES,
    noun: 'role',
    defaultText: 'the *_service sections the config enables; node unless ssh_service.enabled is false',
    description: 'roles this process runs',
  },
  'configured-roles': {
    type: 'boolean',
    description:
      'without --roles, run only the roles whose *_service section the config writes and does not disable: no node role without an ssh_service section (the proxy unit starts so)',
  },
  token: { type: 'string', placeholder: 'VALUE|/path|-', description: 'join token, a path (starting with /) to a file holding it, or - to read it from standard input' },
  'forget-token': { type: 'boolean', description: 'after a join, remove the token from the config file (auth_token) and delete the token file it came from' },
  'auth-server': { type: 'list', placeholder: 'HOST:PORT,..', description: "HOST:PORT of the auth server (or a proxy's web port) to join through" },
  'ca-pin': { type: 'list', placeholder: 'sha256:PIN,..', description: 'pin of the cluster CA, from "warrenctl status"' },
  config: { type: 'path', placeholder: 'FILE', description: 'the YAML config file' },
  'data-dir': { type: 'path', placeholder: 'DIR', defaultText: `the config's data_dir, else ${DEFAULTS.dataDir}`, description: 'where keys, certificates and state are kept' },
  nodename: { type: 'string', placeholder: 'NAME', defaultText: 'the host name', description: "this node's name" },
  labels: { type: 'list', placeholder: 'KEY=VALUE,..', description: 'labels of this node (comma-separated, or the flag repeated)' },
  'diag-addr': {
    type: 'string',
    placeholder: 'HOST:PORT',
    defaultText: "the config's diag_addr, else off",
    description: 'serve /metrics, /healthz and /readyz over plain HTTP here (e.g. 127.0.0.1:3000)',
  },
  debug: { type: 'boolean', description: 'log at debug level, whatever the config says' },
})

export type StartFlags = FlagValues<typeof START_FLAGS>

export const startCommand = defineCommand({
  name: 'warren start',
  summary: 'run the roles of this host (auth, proxy, node) until SIGTERM',
  flags: START_FLAGS,
  description: `A node joins once with an invite token (from "warrenctl nodes add") and keeps its identity in
    the data dir; later starts need no token. SIGHUP re-reads the config file, SIGTERM stops cleanly.`,
  examples: [
    'warren start --roles=auth,proxy --config=/etc/warren.yaml',
    'warren start --roles=node --token=/etc/warren/token --ca-pin=sha256:<pin> --auth-server=proxy.example.com:3080',
  ],
  // A start that failed is over: once the error is printed the process exits with its status,
  // whatever a role left open (under systemd, a failed unit is restarted; a live one is not).
  run: (flags) =>
    start(flags).catch((error) => {
      setImmediate(() => process.exit())
      throw error
    }),
})

export function buildConfig(flags: StartFlags): WarrenConfig {
  const config = flags.config ? loadConfigFile(flags.config) : defaultConfig()
  const pins: string[] | undefined = flags['ca-pin']?.map((pin: string) => parsePin(pin))
  const merged = applyFlags(config, {
    dataDir: flags['data-dir'],
    nodename: flags.nodename,
    token: flags.token,
    authServer: flags['auth-server'],
    caPin: pins,
    labels: flags.labels === undefined ? undefined : parseLabels(flags.labels.join(',')),
    diagAddr: flags['diag-addr'],
  })
  if (flags.debug) merged.log.level = 'debug'
  return merged
}

/** Set in the environment of a process that startAfresh started, so that it never does so again. */
const STARTED_AFRESH = 'WARREN_STARTED_AFRESH'

/**
 * Why process.execve cannot replace this process's image, or undefined if it can. A failed
 * execve ends the process (Node treats it as fatal), so only what can run is tried.
 */
function whyImageCannotBeReplaced(): string | undefined {
  if (typeof process.execve !== 'function') return 'this Node has no process.execve'
  try {
    accessSync(process.execPath, constants.X_OK)
  } catch {
    return `${process.execPath} is not executable`
  }
  return undefined
}

/**
 * Replaces this process, once, with the same command in a fresh process image (same PID, so
 * systemd sees nothing), minus the join token: with the identity on disk it is not needed,
 * and on the command line any local user could read it (`ps`, /proc/PID/cmdline). A node in
 * tunnel mode that has just joined or looked up its tunnel address also sheds the HTTPS
 * client it used, whose memory would count against the device's budget for as long as it
 * runs (see bench:footprint). The fresh image starts with the malloc arenas its unit would
 * give it (shared/malloc-arenas.ts).
 */
function startAfresh(log: Logger, why: string, tokenVisible: boolean): void {
  if (process.env[STARTED_AFRESH]) return
  const cannot = whyImageCannotBeReplaced()
  if (cannot) {
    if (tokenVisible)
      log.warn(
        `this process cannot start afresh without the join token (${cannot}); its title hides the token, but pass it as --token=- or --token=/path to keep it out of sight from the start`,
      )
    return
  }
  // In the single executable argv[1] repeats the executable's path; from source it is the script.
  const args = isSea() ? withoutToken(process.argv.slice(2)) : [...process.execArgv, ...withoutToken(process.argv.slice(1))]
  log.info(`${why}: continuing in a fresh process image`)
  process.execve!(process.execPath, [process.argv0, ...args], { ...withMallocArenas(process.env), [STARTED_AFRESH]: '1' })
}

/**
 * From source, replaces this process (same PID) with the same command under Node's options
 * of the single executable (shared/heap-tuning.ts), so that a daemon run from a checkout
 * runs as the executable does. Nothing happens where they are already in place.
 */
function relaunchWithWarrenExecArgv(): void {
  if (isSea() || startedWithWarrenExecArgv() || whyImageCannotBeReplaced()) return
  process.execve!(process.execPath, [process.argv0, ...WARREN_EXEC_ARGV, ...process.execArgv, ...process.argv.slice(1)], process.env)
}

/**
 * The roles to run: --roles when given, else the `*_service.enabled` keys, as in Teleport:
 * the node role too when the file leaves ssh_service out. With `configuredOnly`
 * (--configured-roles), only sections the file writes count: a proxy or auth host whose
 * file forgot `ssh_service: { enabled: false }` is no node (under the proxy unit it would
 * join as one with the proxy's token, be refused, and stop the proxy with it).
 */
function rolesToRun(flagRoles: string[] | undefined, config: WarrenConfig, configuredOnly: boolean): string[] {
  if (flagRoles) {
    if (configuredOnly) throw new UsageError('--configured-roles takes the roles from the config: it does not go with --roles')
    return flagRoles
  }
  const enabled = { auth: config.auth.enabled, proxy: config.proxy.enabled, node: config.ssh.enabled ?? !configuredOnly }
  const roles = ROLES.filter((role) => enabled[role as keyof typeof enabled])
  if (roles.length === 0) {
    throw new UsageError(
      configuredOnly
        ? 'no role to run: the config writes no auth_service, proxy_service or ssh_service section that is enabled (--configured-roles runs only those); write one or pass --roles'
        : 'no role to run: auth_service, proxy_service and ssh_service are all disabled; enable one or pass --roles',
    )
  }
  return roles
}

/** The diagnostics server (shared/diag-server.ts), loaded only when diag_addr is set. */
async function openDiagnostics(address: string, log: Logger): Promise<DiagServer> {
  const { DiagServer } = await load.diag()
  const diag = new DiagServer({ address, version: VERSION, commit: commit(), log: log.child('diag') })
  try {
    await diag.listen()
  } catch (error) {
    throw new WarrenError(`cannot serve diagnostics on ${address} (diag_addr): ${(error as Error).message}`)
  }
  return diag
}

export async function start(flags: StartFlags): Promise<number> {
  relaunchWithWarrenExecArgv()
  // Until the join replaces this process image without it (startAfresh), or for good where it cannot.
  if (tokenOnCommandLine(flags)) hideFlagValue('token')
  // The file as the process starts with it: a reload names the keys changed since that only a restart applies.
  const startText = flags.config ? readFileSync(flags.config, 'utf8') : undefined
  const config = buildConfig(flags)
  const roles = rolesToRun(flags.roles, config, flags['configured-roles'])
  // An agent on its own waits for work before it pays for V8's optimisers (the proxy and
  // the auth server, in this process or not, want them from the start).
  if (roles.length === 1 && roles[0] === 'node') deferOptimisingCompilers()
  const log = createLogger('warren', { level: config.log.level, format: config.log.format })
  log.info(`starting ${roles.join(', ')}`, { roles: roles.join(',') })
  // Said at every start: a host that ran a node under an earlier unit (no ssh_service section) runs none now.
  if (flags['configured-roles'] && config.ssh.enabled === undefined) {
    log.info('no node role: the config writes no ssh_service section (--configured-roles); write "ssh_service: { enabled: true }" to run one', { roles_left_out: 'node' })
  }
  secureDataDir(config.dataDir, log)
  if (roles.includes('auth') && config.auth.recordingDir !== undefined) secureRecordingDir(config.auth.recordingDir, log)
  if (roles.includes('auth') && config.auth.storage.type === 'sqlite') secureStorageDir(dirname(config.auth.storage.path))
  lockDataDir(config.dataDir)
  const status = new StatusEndpoint(config.dataDir, roles, Boolean(process.env[STARTED_AFRESH]))
  await status.open(log)
  // Roles that join with the operator's token (not one minted in this process) report a
  // join here, once: then the token is cleared away or its place named.
  const origin = tokenOrigin(flags, config.authToken)
  let settled = false
  // A join whose identity the disk refused (the role runs on it from memory) keeps its token
  // where it is, and this process image: a restart before the save joins again with it. The
  // token is settled once the keeper's retry or a renewal has saved the identity.
  const joinedWithToken = (role: 'node' | 'proxy', keeper: IdentityKeeper) => {
    if (settled || origin === undefined) return
    if (keeper.status) log.warn(`the ${role}'s identity is not saved yet: the join token is kept until it is`, { data_dir: config.dataDir })
    keeper.whenSaved(() => {
      if (settled) return
      settled = true
      settleJoinToken(origin, flags['forget-token'], log)
    })
  }
  const hideToken = tokenOnCommandLine(flags)
  const stops: (() => Promise<void>)[] = [() => status.close()]
  const reloads: ((config: WarrenConfig) => void)[] = [(next) => log.setLevel(next.log.level)]
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {})
  }
  try {
    // Before the roles: /healthz answers and /readyz says what is missing while they start.
    const diag = config.diagAddr === undefined ? undefined : await openDiagnostics(config.diagAddr, log)
    if (diag) stops.push(() => diag.close())
    // Roles in the same process as the auth server join it with one-time tokens; a node
    // next to a proxy joins through the proxy, as a remote one would.
    let local: { authServer: string; pins: string[]; mint: (role: 'proxy' | 'node') => Promise<string> } | undefined
    if (roles.includes('auth')) {
      const { AuthServer } = await load.auth()
      const auth = new AuthServer(config, log.child('auth'))
      if (diag) (await load.metrics.auth()).watchAuth(diag, auth)
      await auth.start()
      stops.push(() => auth.stop())
      status.add('auth', () => authStatus(auth))
      local = {
        authServer: auth.address,
        pins: auth.pins,
        mint: async (role) => (await auth.tokenService.add({ roles: [role], ttlMs: 60_000, singleUse: true })).value,
      }
    }
    const minting = config.authServers.length === 0 ? local : undefined
    let proxyWeb: string | undefined
    // Whether the proxy of this process, if it runs one, has its identity on disk: a fresh image needs it.
    let proxyStored = true
    if (roles.includes('proxy')) {
      const proxyConfig = minting ? { ...config, authServers: [minting.authServer], authToken: await minting.mint('proxy'), caPins: minting.pins } : config
      const joins = !minting && !identityExists(config.dataDir, 'proxy')
      const { ProxyService } = await load.proxy()
      const proxy = new ProxyService(proxyConfig, log.child('proxy'))
      if (diag) (await load.metrics.proxy()).watchProxy(diag, proxy)
      // Registered first: a start that fails half way is stopped too (its listeners, its timers).
      stops.push(() => proxy.stop())
      await proxy.start()
      status.add('proxy', () => proxyStatus(proxy))
      proxyStored = identityExists(config.dataDir, 'proxy')
      if (joins) joinedWithToken('proxy', proxy.keeper)
      proxyWeb = proxy.addresses.web.replace(/^(0\.0\.0\.0|\[::\])/, '127.0.0.1')
    }
    if (roles.includes('node')) {
      const nodeConfig = minting ? { ...config, authServers: [proxyWeb ?? minting.authServer], authToken: await minting.mint('node'), caPins: minting.pins } : config
      const joins = !minting && !identityExists(config.dataDir)
      const { Agent } = await load.node()
      const agent = new Agent({ config: nodeConfig, log: log.child('node') })
      if (diag) (await load.metrics.node()).watchNode(diag, agent)
      stops.push(() => agent.stop())
      const usedHttps = await agent.prepare()
      const stored = identityExists(config.dataDir)
      if (joins) joinedWithToken('node', agent.keeper)
      // Before the node's tunnels open; roles started before it start again from their identities.
      // Not while the disk refuses the identity: the fresh image would find neither it nor the token.
      if (stored && usedHttps && roles.length === 1) startAfresh(log, 'identity and tunnel address stored', hideToken)
      else if (stored && hideToken) startAfresh(log, 'identity stored, the join token is not needed any more', true)
      await agent.start()
      status.add('node', () => nodeStatus(agent))
      reloads.push((next) => agent.reload(next))
    }
    if (hideToken && !roles.includes('node') && proxyStored) {
      startAfresh(log, 'identities stored, the join token is not needed any more', true)
    }
  } catch (error) {
    await stopAll()
    throw error instanceof WarrenError ? error : new WarrenError((error as Error).message)
  }
  // SIGHUP re-reads the config file and applies what can change without a restart (log
  // level, labels, forwarded ports); a file that does not load changes nothing.
  const onHangup = () => {
    try {
      const next = buildConfig(flags)
      for (const reload of reloads) reload(next)
      const notApplied = flags.config && startText !== undefined ? keysNeedingRestart(startText, readFileSync(flags.config, 'utf8')) : []
      status.reloaded(undefined, notApplied)
      if (notApplied.length > 0) log.warn(`configuration reloaded, but these keys apply only after a restart: ${notApplied.join(', ')}`, { not_applied: notApplied.join(',') })
      else log.info('configuration reloaded')
    } catch (error) {
      status.reloaded(error as Error)
      log.error(`configuration not reloaded: ${(error as Error).message}`)
    }
  }
  process.on('SIGHUP', onHangup)
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve)
    process.once('SIGINT', resolve)
  })
  process.off('SIGHUP', onHangup)
  log.info('shutting down')
  await stopAll()
  return 0
}
