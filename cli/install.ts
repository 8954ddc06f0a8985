// `warren install`: sets this device up as a node that systemd starts at boot. It writes the
// config (/etc/warren.yaml, 0600: it holds the token), the unit warren.service and the data
// dir (0700), then says how to start it. Nothing else is copied or linked: the executable
// must be at --binary. With --prefix, every path is written under that directory (a root
// file system being prepared), while the files name the paths they will have at run time.

import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs'
import { hostname } from 'node:os'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { stringify } from 'yaml'
import { DEFAULT_BINARY, NODE_UNIT, withBinary } from '../packaging/systemd/units.ts'
import { splitHostPort } from '../shared/address.ts'
import { DEFAULTS, MIN_TOKEN_LENGTH, parseConfig, parseLabels, resolveTokenValue } from '../shared/config.ts'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { writeFileAtomic } from '../shared/files.ts'
import { identityDir } from '../shared/identity-store.ts'
import { nodenameProblem } from '../shared/nodename.ts'
import { parsePin } from '../shared/pin.ts'
import { checkPrivateDir } from '../shared/private-dir.ts'
import { defineCommand } from './command.ts'
import { hideFlagValue } from './command-line-secrets.ts'
import { defineFlags, type FlagValues } from './flags.ts'

const CONFIG_PATH = '/etc/warren.yaml'
const UNIT_PATH = '/etc/systemd/system/warren.service'
// The unit makes this directory (and no other) writable, so the config must name it.
const DATA_DIR = DEFAULTS.dataDir

const COMMAND = 'warren install'

export const INSTALL_FLAGS = defineFlags({
  token: {
    type: 'string',
    placeholder: 'VALUE|/path|-',
    description: 'join token from "warrenctl nodes add", a path (starting with /) to a file holding it, or - to read it from standard input (required)',
  },
  'auth-server': { type: 'list', placeholder: 'HOST:PORT,..', description: "HOST:PORT of a proxy's web port, or of the auth server (required)" },
  'ca-pin': { type: 'list', placeholder: 'sha256:PIN,..', description: 'pin of the cluster CA, from "warrenctl status" (required)' },
  roles: { type: 'list', values: ['auth', 'proxy', 'node'], noun: 'role', default: ['node'], description: 'roles of this host; install sets up the node role' },
  nodename: { type: 'string', placeholder: 'NAME', defaultText: 'the host name', description: "this node's name" },
  labels: { type: 'list', placeholder: 'KEY=VALUE,..', description: 'labels of this node (comma-separated, or the flag repeated)' },
  prefix: { type: 'path', placeholder: 'DIR', description: 'write under this directory instead of / (root not needed)' },
  binary: { type: 'path', default: DEFAULT_BINARY, description: "where the warren executable is, for the unit's ExecStart" },
  force: { type: 'boolean', description: 'replace an existing config' },
})

export const installCommand = defineCommand({
  name: COMMAND,
  summary: 'set this device up as a node that systemd starts at boot (as root)',
  flags: INSTALL_FLAGS,
  description: `Writes ${CONFIG_PATH} (0600: it holds the token), ${UNIT_PATH} and the data dir
    ${DATA_DIR} (0700), then says how to start the node. The executable must already be at --binary.`,
  examples: [
    'sudo warren install --token=/root/token --ca-pin=sha256:<pin> --auth-server=proxy.example.com:3080 --nodename=pi-1',
    'warren install --token=/etc/warren/token --ca-pin=sha256:<pin> --auth-server=proxy.example.com:3080 --prefix=/mnt/image',
  ],
  run(flags) {
    // A token given as a value (not a file or -) must not sit in what `ps` shows meanwhile.
    hideFlagValue('token')
    const plan = planFromFlags(flags)
    if (plan.prefix === undefined && process.getuid?.() !== 0) {
      throw new WarrenError(`${COMMAND} must run as root: it writes ${CONFIG_PATH} and ${UNIT_PATH} (or give --prefix=DIR to write under DIR)`)
    }
    process.stdout.write(writeInstallation(plan))
    return 0
  },
})

interface InstallPlan {
  token: string
  authServers: string[]
  caPins: string[]
  nodename: string
  labels: Record<string, string>
  binary: string
  prefix?: string
  force: boolean
}

function planFromFlags(flags: FlagValues<typeof INSTALL_FLAGS>): InstallPlan {
  const token = flags.token
  if (token === undefined || token.trim() === '') {
    throw new UsageError('--token is required: the invite from "warrenctl nodes add", a file holding it, or - to read it from standard input')
  }
  const authServers = flags['auth-server'] ?? []
  if (authServers.length === 0) throw new UsageError("--auth-server is required: HOST:PORT of a proxy's web port or of the auth server")
  if (authServers.length > 1) throw new UsageError(`--auth-server takes one address, not ${authServers.length}`)
  for (const server of authServers) splitHostPort(server)
  const pins = flags['ca-pin'] ?? []
  // Required here, unlike for `warren start`: an installed node rejoins unattended, and
  // without a pin its token could be handed to whoever answers at the address.
  if (pins.length === 0) throw new UsageError('--ca-pin is required: the sha256:... pin from "warrenctl status"')
  for (const role of flags.roles) {
    if (role !== 'node') {
      throw new UsageError(`${COMMAND} sets up the node role only, not "${role}": for auth and proxy hosts see packaging/systemd/warren-proxy.service`)
    }
  }
  const nodename = flags.nodename ?? hostname()
  if (nodename.trim() === '') throw new UsageError('--nodename needs a name')
  // The auth server's own rule for a joining node's name: a config it would refuse never joins.
  const problem = nodenameProblem(nodename)
  if (problem) {
    throw new UsageError(
      flags.nodename === undefined
        ? `the host name ${JSON.stringify(nodename)} cannot be this node's name (${problem}): give one with --nodename=NAME`
        : `invalid --nodename ${JSON.stringify(nodename)}: ${problem}`,
    )
  }
  const binary = flags.binary
  // Written into ExecStart as it is: no spaces, quotes, % (specifiers) or $ (variables).
  if (!isAbsolute(binary) || !/^[A-Za-z0-9/._+-]+$/.test(binary)) {
    throw new UsageError(`--binary ${JSON.stringify(binary)} must be an absolute path of letters, digits and / . _ + -`)
  }
  const prefix = flags.prefix
  if (prefix !== undefined && prefix.trim() === '') throw new UsageError('--prefix needs a directory')
  // From standard input, once the flags are known good: the value itself goes into the
  // config (0600), since the unit has no standard input.
  const value = token === '-' ? resolveTokenValue(token) : token
  if (!value.startsWith('/')) checkTokenLength(value, token === '-' ? 'the token on standard input (--token=-)' : '--token')
  return {
    token: value,
    authServers,
    caPins: pins.map((pin) => parsePin(pin)),
    nodename,
    labels: flags.labels === undefined ? {} : parseLabels(flags.labels.join(',')),
    binary,
    prefix: prefix === undefined ? undefined : resolve(prefix),
    force: flags.force,
  }
}

/**
 * Every token the auth server issues or accepts has at least MIN_TOKEN_LENGTH characters: a
 * shorter one is a mistake (a truncated paste, a wrong file) that would never join. The
 * message never repeats the token.
 */
function checkTokenLength(token: string, source: string): void {
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new UsageError(`${source} holds ${token.length} characters, but join tokens have at least ${MIN_TOKEN_LENGTH}: give the whole token from "warrenctl nodes add"`)
  }
}

/**
 * Throws when a user other than root (or the one installing) could replace `binary`: it, if
 * it is there, and every directory above it must be theirs and writable by no one else.
 */
export function checkBinaryPath(binary: string): void {
  checkPrivateDir(dirname(binary), { what: 'the directory of --binary', harm: 'replace the executable the unit runs as root' })
  const stats = statSync(binary, { throwIfNoEntry: false })
  if (!stats) return
  const me = process.getuid?.()
  if ((stats.uid !== 0 && stats.uid !== me) || (stats.mode & 0o022) !== 0) {
    throw new WarrenError(
      `--binary ${binary} is owned by uid ${stats.uid} with mode ${(stats.mode & 0o7777).toString(8).padStart(4, '0')}: another user could replace what the unit runs as root; make it root's (chown root: ${binary} && chmod go-w ${binary})`,
    )
  }
}

/** Writes the config, unit and data dir; returns what to tell the person. */
function writeInstallation(plan: InstallPlan): string {
  const under = (path: string) => (plan.prefix === undefined ? path : join(plan.prefix, path))
  const configPath = under(CONFIG_PATH)
  const unitPath = under(UNIT_PATH)
  const dataDir = under(DATA_DIR)

  if (existsSync(configPath) && !plan.force) {
    throw new WarrenError(`${configPath} exists already: give --force to replace it`)
  }
  // The unit runs the executable as root: one that another user could replace is theirs to run as root.
  if (plan.prefix === undefined) checkBinaryPath(plan.binary)
  // A token file is read only at the node's first start: check it now, while someone is
  // watching. Under --prefix the file may not be in place yet.
  if (plan.prefix === undefined && plan.token.startsWith('/')) checkTokenLength(resolveTokenValue(plan.token), `token file ${plan.token}`)

  const config = configText(plan)
  // The file must load as the node will load it; a failure here is a bug, not a bad flag.
  parseConfig(config, configPath)

  for (const dir of [dirname(configPath), dirname(unitPath), dirname(dataDir)]) makeDirectories(dir, 0o755)
  writeFileAtomic(configPath, config, 0o600)
  writeFileAtomic(unitPath, withBinary(NODE_UNIT, plan.binary), 0o644)
  chmodSync(unitPath, 0o644)
  makeDirectories(dataDir, 0o700)
  chmodSync(dataDir, 0o700)

  const lines = [`Wrote ${configPath} (mode 0600: it holds the join token)`, `Wrote ${unitPath}`, `Made ${dataDir} (mode 0700)`]
  if (existsSync(join(identityDir(dataDir), 'identity.json'))) {
    lines.push(`Note: ${dataDir} holds a node identity already, which the node will reuse without joining again; remove ${identityDir(dataDir)} to join with the new token.`)
  }
  if (plan.prefix === undefined && !existsSync(plan.binary)) {
    lines.push(`Note: ${plan.binary} does not exist: put the warren executable there, or install again with --binary=PATH --force.`)
  }
  lines.push('', 'Start the node now and at every boot:', '  systemctl daemon-reload && systemctl enable --now warren', '')
  return lines.join('\n')
}

/**
 * Makes `dir` and its missing parents with exactly `mode`, whatever the umask: under a
 * prefix they become the system's /etc, /var/lib and so on. Existing ones are left alone.
 */
function makeDirectories(dir: string, mode: number): void {
  const missing: string[] = []
  for (let current = dir; !existsSync(current) && dirname(current) !== current; current = dirname(current)) missing.unshift(current)
  for (const directory of missing) {
    mkdirSync(directory, { mode })
    chmodSync(directory, mode)
  }
}

function configText(plan: InstallPlan): string {
  const config: Record<string, unknown> = {
    version: DEFAULTS.version,
    nodename: plan.nodename,
    data_dir: DATA_DIR,
    auth_token: plan.token,
    ca_pin: plan.caPins,
    auth_servers: plan.authServers,
  }
  if (Object.keys(plan.labels).length > 0) config.labels = plan.labels
  return `# Written by ${COMMAND}. Mode 0600: it holds the join token.\n${stringify(config)}`
}
