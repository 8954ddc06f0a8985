// `warren install`: what it writes (and with which modes), that a node started from what it
// wrote joins, what it refuses; and the systemd units it ships: systemd-analyze verify
// accepts them, and the node unit's capabilities are enough for SSH sessions as another login.

import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { installCommand } from '../cli/install.ts'
import { DEFAULT_BINARY, NODE_UNIT, PROXY_UNIT, UNIT_FILES, withBinary } from '../packaging/systemd/units.ts'
import { loadConfigFile } from '../shared/config.ts'
import { UsageError } from '../shared/errors.ts'
import { createSshCertificate, parseSshPublicKey, sshPublicKeyLine } from '../shared/ssh-cert.ts'
import { AuthProcess, Daemon, JSON_LOGS, logEntries, ROOT, type RunResult, startNode, tempDir, waitForNode, warren } from './helpers/cluster.ts'

const PIN = 'sha256:' + 'ab'.repeat(32)
/** A token as long as those the auth server issues (shorter ones are refused). */
const TOKEN = 'a-join-token-0123456789'
const isRoot = process.getuid?.() === 0
const NOBODY = 65534

// The command as warren runs it (runMain: messages and exit codes), in a process of its own.
const scripts = tempDir()
chmodSync(scripts, 0o755)
const installScript = join(scripts, 'install.ts')
writeFileSync(
  installScript,
  [
    `import { installCommand } from ${JSON.stringify(pathToFileURL(join(ROOT, 'cli/install.ts')).href)}`,
    `import { runMain } from ${JSON.stringify(pathToFileURL(join(ROOT, 'cli/main.ts')).href)}`,
    'await runMain((argv) => installCommand.run(argv), process.argv.slice(2))',
  ].join('\n'),
)
chmodSync(installScript, 0o644)

function install(args: string[], options: { uid?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [installScript, ...args], { uid: options.uid, gid: options.uid, cwd: '/', timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr })
    })
    child.stdin?.end(options.input ?? '')
  })
}

/** An executable file standing in for warren, so that ExecStart names something real. */
function fakeBinary(): string {
  const path = join(tempDir(), 'warren')
  writeFileSync(path, '#!/bin/sh\nexit 0\n', { mode: 0o755 })
  return path
}

/** Every path under `dir`, relative to it, directories marked with a trailing slash. */
function listTree(dir: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)) + (entry.isDirectory() ? '/' : ''))
    .sort()
}

const mode = (path: string) => statSync(path).mode & 0o777

t.test('install writes the config, the unit and the data dir; a node started from them joins', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const prefix = tempDir()
  const binary = fakeBinary()
  const pin = await auth.pin()
  const token = await auth.token()

  // The token on standard input, as the command that nodes add prints gives it.
  const result = await install(
    [`--prefix=${prefix}`, '--token=-', `--auth-server=${auth.address}`, `--ca-pin=${pin}`, '--nodename=installed-1', '--labels=site=lab,rack=r7', `--binary=${binary}`],
    { input: `${token}\n` },
  )
  t.equal(result.code, 0, result.stderr)
  t.match(result.stdout, /^ {2}systemctl daemon-reload && systemctl enable --now warren$/m)
  t.same(
    listTree(prefix),
    ['etc/', 'etc/systemd/', 'etc/systemd/system/', 'etc/systemd/system/warren.service', 'etc/warren.yaml', 'var/', 'var/lib/', 'var/lib/warren/'],
    'the three things and their parent directories, nothing else',
  )

  const configPath = join(prefix, 'etc/warren.yaml')
  const unitPath = join(prefix, 'etc/systemd/system/warren.service')
  const dataDir = join(prefix, 'var/lib/warren')
  t.equal(mode(configPath), 0o600, 'the config holds the token')
  t.equal(mode(unitPath), 0o644)
  t.equal(mode(dataDir), 0o700)
  t.equal(mode(join(prefix, 'etc')), 0o755, 'parents made for the prefix stay traversable')
  t.equal(readFileSync(unitPath, 'utf8'), withBinary(NODE_UNIT, binary))
  t.match(readFileSync(unitPath, 'utf8'), new RegExp(`^ExecStart=${binary} start --config=/etc/warren.yaml$`, 'm'))

  const config = loadConfigFile(configPath)
  t.equal(config.nodename, 'installed-1')
  t.equal(config.authToken, token, 'the token read from standard input is written as the value')
  t.same(config.caPins, [pin])
  t.same(config.authServers, [auth.address])
  t.same(config.labels, { site: 'lab', rack: 'r7' })
  t.equal(config.dataDir, '/var/lib/warren', 'the path the data dir has on the installed system')

  // The file as the unit would run it; only the data dir moves into the prefix, and the
  // port a direct node serves proxies on, to a free one on loopback.
  appendFileSync(configPath, 'ssh_service:\n  listen_addr: 127.0.0.1:0\n')
  const node = startNode([`--config=${configPath}`, `--data-dir=${dataDir}`])
  t.teardown(() => node.stop())
  const listing = await waitForNode(auth, 'installed-1')
  t.match(listing, /^installed-1\s.*rack=r7,site=lab$/m)

  const again = await install([`--prefix=${prefix}`, '--token=other-token-0123456789', `--auth-server=${auth.address}`, `--ca-pin=${pin}`, '--force'])
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /holds a node identity already/, 'a reinstall warns that the stored identity wins over the new token')
})

t.test('install refuses an existing config unless --force', async (t) => {
  const prefix = tempDir()
  const args = [`--prefix=${prefix}`, '--auth-server=proxy.example.com:3080', `--ca-pin=${PIN}`]
  t.equal((await install([...args, '--token=first-token-0123456789'])).code, 0)
  const configPath = join(prefix, 'etc/warren.yaml')
  const before = readFileSync(configPath, 'utf8')

  const refused = await install([...args, '--token=second-token-0123456789'])
  t.equal(refused.code, 1)
  t.match(refused.stderr, `ERROR: ${configPath} exists already: give --force to replace it`)
  t.equal(readFileSync(configPath, 'utf8'), before, 'the config is untouched')

  const forced = await install([...args, '--token=second-token-0123456789', '--force'])
  t.equal(forced.code, 0, forced.stderr)
  t.equal(loadConfigFile(configPath).authToken, 'second-token-0123456789')
  t.equal(mode(configPath), 0o600)
})

t.test('install refuses bad flags with exit status 2, writing nothing', async (t) => {
  const prefix = join(tempDir(), 'root')
  const unknown = await install([`--prefix=${prefix}`, '--tokn=x'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /^ERROR: unknown flag --tokn for "warren install": did you mean --token\?$/m)
  t.same(listTree(prefix), [], 'nothing written')

  // The rest in this process: each must be a UsageError, which warren exits with status 2.
  const good = { token: `--token=${TOKEN}`, server: '--auth-server=proxy.example.com:3080', pin: `--ca-pin=${PIN}` }
  const cases: [string[], RegExp][] = [
    [[good.server, good.pin], /--token is required/],
    [['--token=', good.server, good.pin], /--token is required/],
    [[good.token, good.pin], /--auth-server is required/],
    [[good.token, '--auth-server=https://proxy.example.com:3080', good.pin], /invalid address "https:\/\/proxy.example.com:3080"/],
    [[good.token, '--auth-server=a.example.com:3080,b.example.com:3080', good.pin], /--auth-server takes one address, not 2/],
    [[good.token, good.server], /--ca-pin is required/],
    [[good.token, good.server, '--ca-pin=sha256:1234'], /invalid CA pin "sha256:1234"/],
    [[good.token, good.server, good.pin, '--roles=node,proxy'], /sets up the node role only, not "proxy"/],
    [[good.token, good.server, good.pin, '--labels=no-equals-sign'], /invalid label "no-equals-sign"/],
    [[good.token, good.server, good.pin, '--binary=bin/warren'], /--binary "bin\/warren" must be an absolute path/],
    [[good.token, good.server, good.pin, '--binary=/opt/my warren'], /must be an absolute path/],
    [[good.token, good.server, good.pin, 'extra'], /unexpected argument "extra"/],
    // What the join would refuse: a token shorter than any the auth server issues, a node name it does not take.
    [['--token=abc', good.server, good.pin], /^--token holds 3 characters, but join tokens have at least 16: give the whole token from "warrenctl nodes add"$/],
    [[good.token, good.server, good.pin, '--nodename=pi 1'], /^invalid --nodename "pi 1": field "nodename" must be a host name/],
    [[good.token, good.server, good.pin, '--nodename=../pi'], /^invalid --nodename "\.\.\/pi": field "nodename" must be a host name/],
    [[good.token, good.server, good.pin, '--nodename=localhost'], /^invalid --nodename "localhost": .*reserved name/],
    [
      [good.token, good.server, good.pin, '--nodename=3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21'],
      /^invalid --nodename "3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21": .*must not look like a host ID/,
    ],
  ]
  for (const [args, expected] of cases) {
    const prefix = join(tempDir(), 'root')
    const error = await installCommand.run([`--prefix=${prefix}`, ...args]).then(
      () => undefined,
      (err: unknown) => err,
    )
    t.ok(error instanceof UsageError, args.join(' '))
    t.match((error as Error).message, expected)
    t.same(listTree(prefix), [], 'nothing written')
  }
})

t.test('install refuses a token shorter than any the auth server issues with exit status 2, from every source', async (t) => {
  const args = ['--auth-server=proxy.example.com:3080', `--ca-pin=${PIN}`]
  const fromFlag = join(tempDir(), 'root')
  const flag = await install([`--prefix=${fromFlag}`, '--token=s3cr3t', ...args])
  t.equal(flag.code, 2)
  t.match(flag.stderr, /^ERROR: --token holds 6 characters, but join tokens have at least 16/)
  t.same(listTree(fromFlag), [], 'nothing written')

  const fromInput = join(tempDir(), 'root')
  const input = await install([`--prefix=${fromInput}`, '--token=-', ...args], { input: 's3cr3t\n' })
  t.equal(input.code, 2)
  t.match(input.stderr, /^ERROR: the token on standard input \(--token=-\) holds 6 characters/)
  t.same(listTree(fromInput), [], 'nothing written')
  for (const result of [flag, input]) t.notMatch(result.stderr, 's3cr3t', 'the token is never repeated')
})

t.test('install refuses to run without root unless given --prefix', async (t) => {
  // As root, the refusal is checked by running as nobody, which could not write /etc anyway.
  const result = await install([`--token=${TOKEN}`, '--auth-server=proxy.example.com:3080', `--ca-pin=${PIN}`], isRoot ? { uid: NOBODY } : {})
  t.equal(result.code, 1)
  t.match(result.stderr, /^ERROR: warren install must run as root: it writes \/etc\/warren\.yaml and \/etc\/systemd\/system\/warren\.service \(or give --prefix=DIR/)

  const prefix = tempDir()
  if (isRoot) chownSync(prefix, NOBODY, NOBODY)
  const staged = await install([`--prefix=${prefix}`, `--token=${TOKEN}`, '--auth-server=proxy.example.com:3080', `--ca-pin=${PIN}`], isRoot ? { uid: NOBODY } : {})
  t.equal(staged.code, 0, staged.stderr)
  t.ok(existsSync(join(prefix, 'etc/warren.yaml')), 'with --prefix it writes there as any user')
})

t.test('the unit files shipped for packagers are the ones install writes', async (t) => {
  for (const [name, text] of Object.entries(UNIT_FILES)) {
    t.equal(readFileSync(join(ROOT, 'packaging/systemd', name), 'utf8'), text, `${name} matches packaging/systemd/units.ts (node packaging/systemd/units.ts rewrites it)`)
  }
})

const analyzer = spawnSync('systemd-analyze', ['--version']).status === 0
t.test('systemd-analyze verify accepts both units', { skip: analyzer ? false : 'systemd-analyze is not installed (Debian package systemd)' }, async (t) => {
  const prefix = tempDir()
  const binary = fakeBinary()
  const installed = await install([`--prefix=${prefix}`, `--token=${TOKEN}`, '--auth-server=proxy.example.com:3080', `--ca-pin=${PIN}`, `--binary=${binary}`])
  t.equal(installed.code, 0, installed.stderr)
  const proxyUnit = join(tempDir(), 'warren-proxy.service')
  writeFileSync(proxyUnit, withBinary(PROXY_UNIT, binary))
  for (const unit of [join(prefix, 'etc/systemd/system/warren.service'), proxyUnit]) {
    const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' })
    t.equal(verify.status, 0, `verify ${unit}`)
    // Unknown keys and bad values are only warnings: clean means nothing printed at all.
    t.equal(verify.stdout + verify.stderr, '', `no complaints about ${unit}`)
  }
})

/** The arguments of warren in `unit`'s ExecStart, with `config` for /etc/warren.yaml. */
function execStartArgs(unit: string, config: string): string[] {
  const line = /^ExecStart=(\S+) (.+)$/m.exec(unit)
  if (line?.[1] !== DEFAULT_BINARY) throw new Error(`the unit's ExecStart does not run ${DEFAULT_BINARY}`)
  return line[2].split(' ').map((arg) => arg.replace(/^--config=\/etc\/warren\.yaml$/, `--config=${config}`))
}

t.test("the proxy unit's command line runs the roles whose sections the config writes, no node role unless ssh_service is written", async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const dir = tempDir()
  // A proxy's file as packaging/examples/proxy.yaml, but without `ssh_service: { enabled: false }`.
  const proxyConfig = async (name: string, extra: string[] = []) => {
    const path = join(dir, `${name}.yaml`)
    writeFileSync(
      path,
      [
        'version: v1',
        `nodename: ${name}`,
        `data_dir: ${join(dir, name)}`,
        `auth_token: ${await auth.token(['tokens', 'add', '--type=proxy'])}`,
        `ca_pin: ${pin}`,
        `auth_servers: ["${auth.address}"]`,
        'proxy_service:',
        '  enabled: true',
        '  web_listen_addr: 127.0.0.1:0',
        '  tunnel_listen_addr: 127.0.0.1:0',
        ...extra,
        JSON_LOGS,
      ].join('\n'),
    )
    return path
  }

  const proxy = new Daemon(execStartArgs(PROXY_UNIT, await proxyConfig('unit-proxy')))
  t.teardown(() => proxy.stop())
  const status = await proxy.waitForStatus('the proxy to listen', (s) => s.proxy !== undefined)
  t.same(status.process.roles, ['proxy'], 'the proxy alone: no node role joining with the proxy token')
  t.ok(logEntries(proxy.stderr, { roles_left_out: 'node' }).length > 0, 'and says it runs no node role')
  t.ok(proxy.running, 'the proxy still runs')
  await proxy.stop()

  // A file that writes ssh_service asks for the node role: the unit runs it (here with a node token).
  const withNode = join(dir, 'with-node.yaml')
  writeFileSync(
    withNode,
    [
      'version: v1',
      'nodename: unit-node',
      `data_dir: ${join(dir, 'with-node')}`,
      `auth_token: ${await auth.token(['tokens', 'add', '--type=node'])}`,
      `ca_pin: ${pin}`,
      `auth_servers: ["${auth.address}"]`,
      'ssh_service:',
      '  listen_addr: 127.0.0.1:0',
      '',
    ].join('\n'),
  )
  const node = new Daemon(execStartArgs(PROXY_UNIT, withNode))
  t.teardown(() => node.stop())
  const nodeStatus = await node.waitForStatus('the node to join', (s) => s.node !== undefined)
  t.same(nodeStatus.process.roles, ['node'], 'ssh_service written: the node role')
  await waitForNode(auth, 'unit-node')
  await node.stop()

  const nothing = join(dir, 'nothing.yaml')
  writeFileSync(nothing, `version: v1\ndata_dir: ${join(dir, 'nothing')}\n`)
  const refused = await warren(execStartArgs(PROXY_UNIT, nothing))
  t.equal(refused.code, 2, 'a file that writes no role is bad usage, which the unit does not restart')
  t.match(refused.stderr, /^ERROR: no role to run: the config writes no auth_service, proxy_service or ssh_service section that is enabled/)
  t.notOk(existsSync(join(dir, 'nothing')), 'no data dir was created')

  const both = await warren([...execStartArgs(PROXY_UNIT, nothing), '--roles=proxy'])
  t.equal(both.code, 2)
  t.match(both.stderr, /--configured-roles takes the roles from the config: it does not go with --roles/)

  // The node unit's command line keeps Teleport's default: a file without sections runs the node role.
  t.notMatch(NODE_UNIT, /--configured-roles/)
})

// ---------------------------------------------------------------------------------------
// The node unit's CapabilityBoundingSet, applied with setpriv to a real SSH server.

const setpriv = spawnSync('setpriv', ['--version']).status === 0
const sshClient = spawnSync('ssh', ['-V']).status === 0
const capabilitySkip = !isRoot ? 'needs root (switching users)' : !setpriv ? 'setpriv is not installed (util-linux)' : !sshClient ? 'ssh is not installed (openssh-client)' : false

/** The unit's capabilities in setpriv's form: `-all,+setuid,...`. */
function boundingSet(unit: string, without: string[] = []): string {
  const line = /^CapabilityBoundingSet=(.+)$/m.exec(unit)
  if (!line) throw new Error('the unit has no CapabilityBoundingSet')
  const caps = line[1]
    .trim()
    .split(/\s+/)
    .map((cap) => cap.replace(/^CAP_/, '').toLowerCase())
  return ['-all', ...caps.filter((cap) => !without.includes(cap)).map((cap) => `+${cap}`)].join(',')
}

interface SshFixture {
  /** OpenSSH's arguments to run `remoteCommand` as the login. */
  args(remoteCommand: string): string[]
  run(remoteCommand: string): Promise<RunResult>
  stop(): Promise<void>
}

/** NodeSshServer in its own process under `bounds`; its one login runs as nobody in a 0700 home. */
async function sshServerUnder(bounds: string, home: string): Promise<SshFixture> {
  const dir = tempDir()
  const userCA = generateKeyPairSync('ed25519')
  const hostKey = generateKeyPairSync('ed25519')
  const keyFile = join(dir, 'id_ed25519')
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test', '-f', keyFile], { stdio: 'ignore' })
  writeFileSync(
    keyFile + '-cert.pub',
    createSshCertificate({
      publicKey: parseSshPublicKey(readFileSync(keyFile + '.pub', 'utf8')),
      caKey: userCA.privateKey,
      type: 'user',
      keyId: 'install-test',
      principals: ['session-user'],
      validAfter: new Date(Date.now() - 3_600_000),
      validBefore: new Date(Date.now() + 3_600_000),
    }) + '\n',
  )

  const server = join(dir, 'ssh-server.ts')
  writeFileSync(
    server,
    `
    import { createServer } from 'node:net'
    import { NodeSshServer } from ${JSON.stringify(pathToFileURL(join(ROOT, 'agent/ssh-server.ts')).href)}
    const options = JSON.parse(process.argv[2])
    const account = { name: 'session-user', uid: ${NOBODY}, gid: ${NOBODY}, home: options.home, shell: '/bin/sh' }
    const ssh = new NodeSshServer({ hostKeyPem: options.hostKeyPem, userCAKeys: [options.userCAKey], resolveLogin: (login) => (login === account.name ? account : undefined) })
    const listener = createServer((socket) => ssh.handleConnection(socket))
    listener.listen(0, '127.0.0.1', () => process.stdout.write(listener.address().port + '\\n'))
    process.once('SIGTERM', () => { listener.close(); ssh.close().finally(() => process.exit(0)) })
  `,
  )
  const options = {
    home,
    hostKeyPem: hostKey.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    userCAKey: sshPublicKeyLine(userCA.publicKey),
  }
  const child: ChildProcess = spawn('setpriv', [`--bounding-set=${bounds}`, process.execPath, server, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let logs = ''
  child.stderr!.on('data', (chunk) => (logs += chunk))
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (chunk) => resolve(Number(String(chunk).trim())))
    child.once('exit', (code) => reject(new Error(`the SSH server exited (${code}):\n${logs}`)))
  })
  const knownHosts = join(dir, 'known_hosts')
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${sshPublicKeyLine(hostKey.publicKey)}\n`)

  const args = (remoteCommand: string) => [
    '-F',
    '/dev/null',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${knownHosts}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-i',
    keyFile,
    '-p',
    String(port),
    'session-user@127.0.0.1',
    remoteCommand,
  ]
  return {
    args,
    run: (remoteCommand) =>
      new Promise((resolve) => {
        execFile('ssh', args(remoteCommand), { timeout: 30_000 }, (error, stdout, stderr) => {
          resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr })
        })
      }),
    stop: async () => {
      child.kill('SIGTERM')
      await exited
    },
  }
}

/** A home directory as logins have them: owned by the login, mode 0700. */
function privateHome(): string {
  const parent = tempDir()
  chmodSync(parent, 0o755)
  const home = join(parent, 'home')
  mkdirSync(home, { mode: 0o700 })
  chownSync(home, NOBODY, NOBODY)
  return home
}

t.test("the node unit's capabilities let the SSH server run sessions as another login", { skip: capabilitySkip }, async (t) => {
  const home = privateHome()
  const ssh = await sshServerUnder(boundingSet(NODE_UNIT), home)
  t.teardown(() => ssh.stop())

  const session = await ssh.run('id -u; pwd; touch "$HOME/made-in-session" && echo wrote')
  t.equal(session.code, 0, session.stderr)
  t.equal(session.stdout, `${NOBODY}\n${home}\nwrote\n`, 'runs as the login, in its private home, and can write there')
  t.equal(statSync(join(home, 'made-in-session')).uid, NOBODY)

  // A client that goes away ends its session: the server signals the session's processes,
  // which belong to the login, and that takes CAP_KILL.
  const marker = join(home, 'pid')
  const client = spawn('ssh', ssh.args(`echo $$ > ${marker}; exec sleep 300`), { stdio: 'ignore' })
  const clientExited = new Promise((resolve) => client.once('exit', resolve))
  await waitUntil(() => existsSync(marker) && readFileSync(marker, 'utf8').endsWith('\n'))
  const sleeper = Number(readFileSync(marker, 'utf8'))
  t.teardown(() => {
    if (processAlive(sleeper)) process.kill(sleeper, 'SIGKILL')
  })
  t.ok(processAlive(sleeper), 'the session is running')
  client.kill('SIGKILL')
  await clientExited
  await waitUntil(() => !processAlive(sleeper))
  t.notOk(processAlive(sleeper), "the session's process ended with its connection")
})

t.test("under the node unit's capabilities a session's pty belongs to its login", { skip: capabilitySkip }, async (t) => {
  const ssh = await sshServerUnder(boundingSet(NODE_UNIT), privateHome())
  t.teardown(() => ssh.stop())
  // The unit leaves CAP_CHOWN out, so the pty cannot be handed over after it is made.
  const session = await new Promise<RunResult>((resolve) =>
    execFile('ssh', ['-tt', ...ssh.args('id -u; stat -c %u "$(tty)"')], { timeout: 30_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    ),
  )
  t.equal(session.code, 0, session.stderr)
  t.equal(session.stdout, `${NOBODY}\r\n${NOBODY}\r\n`)
})

t.test(
  "under the node unit's capabilities a session with a pty gets its login's audit login UID",
  { skip: capabilitySkip || (!existsSync('/proc/self/loginuid') && 'the kernel keeps no audit login UID') },
  async (t) => {
    const ssh = await sshServerUnder(boundingSet(NODE_UNIT), privateHome())
    t.teardown(() => ssh.stop())
    const run = (args: string[]) =>
      new Promise<RunResult>((resolve) =>
        execFile('ssh', args, { timeout: 30_000 }, (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr })),
      )
    const session = await run(['-tt', ...ssh.args('cat /proc/self/loginuid')])
    t.equal(session.code, 0, session.stderr)
    t.equal(session.stdout.trim(), String(NOBODY), 'set by its helper before it took the login IDs: the unit keeps CAP_AUDIT_CONTROL')
  },
)

t.test("the node unit lets the agent write the system's login records, and only those of /run and /var/log", async (t) => {
  const paths = /^ReadWritePaths=(.+)$/m.exec(NODE_UNIT)?.[1]?.split(/\s+/) ?? []
  for (const file of ['-/run/utmp', '-/var/log/wtmp', '-/var/log/lastlog']) t.ok(paths.includes(file), `${file} (in agent/login-records.ts)`)
  t.notOk(
    paths.some((path) => /^-?\/(run|var\/log)\/?$/.test(path)),
    'not the directories',
  )
})

t.test('without CAP_DAC_READ_SEARCH the server cannot enter a private home: the unit needs it', { skip: capabilitySkip }, async (t) => {
  const ssh = await sshServerUnder(boundingSet(NODE_UNIT, ['dac_read_search']), privateHome())
  t.teardown(() => ssh.stop())
  const session = await ssh.run('id -u')
  t.equal(session.code, 127)
  t.match(session.stderr, /cannot start the session: .*EACCES/)
})

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function waitUntil(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
}
