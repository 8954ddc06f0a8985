#!/usr/bin/env node
// `warren`: the daemon (start) and the user's client. `warren ctl ...` is warrenctl.

import { runMain } from './main.ts'
import { load } from './load.ts'
import { UsageError } from '../shared/errors.ts'
import { VERSION } from '../shared/version.ts'

const USAGE = `Usage: warren <command> [flags]

Commands:
  start     run the roles of this host (auth, proxy, node)
  status    what a running "warren start" holds: its roles, tunnels and certificates
  ssh       log in to a node through a proxy: warren ssh login@node [command]
  proxy ssh an OpenSSH ProxyCommand: warren proxy ssh %r@%h:%p
  proxy port standard input/output to a port a node declares: warren proxy port NODE NAME
  install   set this device up as a node that systemd starts at boot (as root)
  ctl       administer the cluster (same as warrenctl)
  version   print the version
  help      show this help

Run "warren start --help" for the flags of start.`

export async function warren(argv: string[]): Promise<number | void> {
  const [command, ...rest] = argv
  switch (command) {
    case 'start':
      if (rest.includes('--help')) return void process.stdout.write(startHelp())
      return (await load.start()).start(rest)
    case 'status':
      return (await load.status()).status(rest)
    case 'ssh':
      return (await load.ssh()).ssh(rest)
    case 'install':
      return (await load.install()).install(rest)
    case 'proxy':
      if (rest[0] === 'ssh') return (await load.ssh()).proxySsh(rest.slice(1))
      if (rest[0] === 'port') return (await load.ssh()).proxyPort(rest.slice(1))
      throw new UsageError('usage: warren proxy ssh login@node[:port] | warren proxy port NODE NAME')
    case 'ctl':
      return (await load.warrenctl()).warrenctl(rest)
    case 'version':
    case '--version':
      process.stdout.write(`Warren v${VERSION} node ${process.version} commit ${commit()}\n`)
      return 0
    case 'help':
    case '--help':
    case undefined:
      process.stdout.write(USAGE + '\n')
      return command === undefined ? 2 : 0
    default:
      throw new UsageError(`unknown command "${command}"\n${USAGE}`)
  }
}

declare const __WARREN_COMMIT__: string | undefined

/** The commit the single executable was built from (defined by the build); from a checkout, git's. */
function commit(): string {
  if (typeof __WARREN_COMMIT__ === 'string') return __WARREN_COMMIT__
  try {
    // Loaded here, not at the top: every agent runs this file, and child_process costs memory.
    const { execFileSync } = process.getBuiltinModule('node:child_process')
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: import.meta.dirname, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || 'unknown'
  } catch {
    return 'unknown'
  }
}

function startHelp(): string {
  return 'Usage: warren start --roles=node --token=VALUE|/path|- --auth-server=HOST:PORT [--ca-pin=sha256:...] [--config=FILE]\n'
}

if (import.meta.main) await runMain(warren, process.argv.slice(2))
