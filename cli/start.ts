// `warren start`: runs the roles this process holds (auth, node) until SIGTERM or SIGINT.

import { AuthServer } from '../auth/server.ts'
import { Agent } from '../agent/agent.ts'
import { applyFlags, defaultConfig, loadConfigFile, parseLabels, type WarrenConfig } from '../shared/config.ts'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { parseFlags, type FlagSpec } from '../shared/flags.ts'
import { createLogger } from '../shared/log.ts'
import { parsePin } from '../shared/pin.ts'

const ROLES = ['auth', 'node']

export const START_FLAGS: FlagSpec = {
  roles: { type: 'list', default: ['node'], description: 'roles this process runs: auth, node (comma-separated)' },
  token: { type: 'string', description: 'join token, or a path (starting with /) to a file holding it' },
  'auth-server': { type: 'list', description: 'HOST:PORT of the auth server (or a proxy\'s web port) to join through' },
  'ca-pin': { type: 'list', description: 'sha256:... pin of the cluster CA, from "warrenctl status"' },
  config: { type: 'string', description: 'path to the YAML config file' },
  'data-dir': { type: 'string', description: 'where keys, certificates and state are kept' },
  nodename: { type: 'string', description: 'this node\'s name (default: the host name)' },
  labels: { type: 'string', description: 'labels as key=value,key2=value2' },
  debug: { type: 'boolean', description: 'log at debug level' },
}

export function buildConfig(flags: Record<string, any>): WarrenConfig {
  const config = flags.config ? loadConfigFile(flags.config) : defaultConfig()
  const pins: string[] | undefined = flags['ca-pin']?.map((pin: string) => parsePin(pin))
  const merged = applyFlags(config, {
    dataDir: flags['data-dir'],
    nodename: flags.nodename,
    token: flags.token,
    authServer: flags['auth-server'],
    caPin: pins,
    labels: flags.labels === undefined ? undefined : parseLabels(flags.labels),
  })
  if (flags.debug) merged.log.level = 'debug'
  return merged
}

export async function start(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(argv, START_FLAGS, 'warren start')
  if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}" for "warren start"`)
  const roles: string[] = flags.roles
  for (const role of roles) {
    if (!ROLES.includes(role)) throw new UsageError(`unknown or unavailable role "${role}" for --roles: use ${ROLES.join(', ')}`)
  }
  const config = buildConfig(flags)
  const log = createLogger('warren', { level: config.log.level, format: config.log.format })
  const stops: (() => Promise<void>)[] = []
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {})
  }
  try {
    if (roles.includes('auth')) {
      const auth = new AuthServer(config, log.child('auth'))
      await auth.start()
      stops.push(() => auth.stop())
      if (roles.includes('node') && config.authServers.length === 0) {
        // A node in the same process joins its own auth server with a one-time token.
        const { value } = await auth.tokenService.add({ roles: ['node'], ttlMs: 60_000, singleUse: true })
        config.authServers = [auth.address]
        config.authToken = value
        config.caPins = auth.pins
      }
    }
    if (roles.includes('node')) {
      const agent = new Agent({ config, roles: ['node'], log: log.child('node') })
      await agent.start()
      stops.push(() => agent.stop())
    }
  } catch (error) {
    await stopAll()
    throw error instanceof WarrenError ? error : new WarrenError((error as Error).message)
  }
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve)
    process.once('SIGINT', resolve)
  })
  log.info('shutting down')
  await stopAll()
  return 0
}
