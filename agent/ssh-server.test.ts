import { spawn, spawnSync } from 'node:child_process'
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { duplexPair } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import ssh2 from 'ssh2'
import t from 'tap'
import type { Access } from '../shared/access.ts'
import { sshAccessExtensions } from '../shared/access-cert.ts'
import { createLogger } from '../shared/log.ts'
import { createSshCertificate, parseSshPublicKey, sshPublicKeyLine } from '../shared/ssh-cert.ts'
import { sshString, uint32 } from '../shared/ssh-wire.ts'
import { testLogin } from '../test/helpers/cluster.ts'
import { lookupPasswd } from './login-accounts.ts'
import { findPerl } from './pty.ts'
import { FXP, packet } from './sftp/protocol.ts'
import { findSftpServer } from './sftp-server.ts'
import { NodeSshServer } from './ssh-server.ts'

const HOUR = 3_600_000
const dir = t.testdir()
const userCA = generateKeyPairSync('ed25519')
const otherCA = generateKeyPairSync('ed25519')
const hostKey = generateKeyPairSync('ed25519')

// The user's key comes from ssh-keygen, so that OpenSSH reads it as its own.
const keyFile = join(dir, 'id_ed25519')
spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test', '-f', keyFile], { stdio: 'ignore' })
const userKey = parseSshPublicKey(readFileSync(keyFile + '.pub', 'utf8'))

interface CertOptions {
  caKey?: KeyObject
  principals?: string[]
  validBefore?: Date
  extensions?: Record<string, string>
}

/** A directory holding id_ed25519 and, unless `cert` is false, id_ed25519-cert.pub. */
function identity(name: string, cert: CertOptions | false = {}): string {
  const home = join(dir, name)
  mkdirSync(home)
  const key = join(home, 'id_ed25519')
  copyFileSync(keyFile, key)
  if (cert) {
    const line = createSshCertificate({
      publicKey: userKey,
      caKey: cert.caKey ?? userCA.privateKey,
      type: 'user',
      keyId: `test-${name}`,
      principals: cert.principals ?? ['root'],
      validAfter: new Date(Date.now() - HOUR),
      validBefore: cert.validBefore ?? new Date(Date.now() + HOUR),
      extensions: cert.extensions,
    })
    writeFileSync(key + '-cert.pub', line + '\n')
  }
  return key
}

const good = identity('good')
/** The port a test declares as the forwarded port "webui". */
let webuiPort = -1
const logLines: string[] = []
const log = createLogger('node', { level: 'debug', stream: { write: (line: string) => logLines.push(line) } as unknown as NodeJS.WritableStream })
// Sessions run as the real root account but with a fresh home: this machine's root startup
// files (not under test) can stall a bash that many parallel tests start at once.
const TEST_HOME = mkdtempSync(join(tmpdir(), 'warren-home-'))
/** The sftp-server the node finds; a test swaps in another, or none. */
let sftpServerPath = findSftpServer()
/** The perl the node opens ptys with; a test takes it away to have `script` hold them. */
let perlPath = findPerl()
/** The login's shell, when a test gives it another than its account's. */
let loginShell: string | undefined
/** How often the server looked a login up. */
let lookups = 0
/** What onFileOperation was told, with who did it. */
const fileOperations: Record<string, unknown>[] = []
/** The audit events the server recorded, their fields flat. */
const auditEvents: Record<string, unknown>[] = []
const server = new NodeSshServer({
  hostKeyPem: hostKey.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  userCAKeys: [sshPublicKeyLine(userCA.publicKey)],
  log,
  resolveLogin: (login) => {
    lookups++
    const account = lookupPasswd(login)
    return account && { ...account, home: TEST_HOME, shell: loginShell ?? account.shell }
  },
  // Where -L may go is the node's policy (test/port-forwarding.test.ts); here, anywhere.
  forwardRefusal: () => undefined,
  // The node's own labels, which the user's roles in a certificate are judged against.
  labels: () => ({ env: 'lab' }),
  declaredPortName: (_host, port) => (port === webuiPort ? 'webui' : undefined),
  sftpServer: () => sftpServerPath,
  perl: () => perlPath,
  onFileOperation: (op, who) => fileOperations.push({ ...op, ...who }),
  audit: (type, fields) => auditEvents.push({ type, ...fields }),
  // Absent until a test writes them: the administrator's variables for every login.
  environmentFiles: [join(dir, 'environment'), join(dir, 'locale')],
})
const listener: Server = createServer((socket) => server.handleConnection(socket))
await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
const port = (listener.address() as AddressInfo).port
const knownHosts = join(dir, 'known_hosts')
writeFileSync(knownHosts, `[127.0.0.1]:${port} ${sshPublicKeyLine(createPublicKey(hostKey.privateKey))}\n`)

t.teardown(async () => {
  await server.close()
  listener.close()
  rmSync(TEST_HOME, { recursive: true, force: true })
})

function sshArgs(key: string, login = 'root'): string[] {
  return [
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
    '-o',
    'ConnectTimeout=5',
    '-i',
    key,
    '-p',
    String(port),
    `${login}@127.0.0.1`,
  ]
}

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

/** With `holdInput` stdin stays open until the process exits: the terminal `script` gives ssh then sees no end of input, which ssh would send on as a ^D that the remote pty echoes. */
function run(command: string, args: string[], input?: string | Buffer, holdInput = false): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'pipe' })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    child.on('error', reject)
    child.on('close', (code) => {
      child.stdin.destroy()
      resolve({ code, stdout, stderr })
    })
    if (!holdInput) child.stdin.end(input)
  })
}

/** `sftp -b -` as root with the good certificate. */
function sftpArgs(): string[] {
  return [...sshArgs(good).slice(0, -3), '-P', String(port), '-b', '-', 'root@127.0.0.1']
}

function ssh(key: string, remoteCommand: string[], input?: string | Buffer, login?: string): Promise<Result> {
  return run('ssh', [...sshArgs(key, login), ...remoteCommand], input)
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

function processRunning(pattern: string): boolean {
  return spawnSync('pgrep', ['-f', pattern]).status === 0
}

t.test('exec runs the command with its exit status, stdout and stderr', async (t) => {
  const result = await ssh(good, ['echo hello; echo oops >&2; exit 3'])
  t.equal(result.stdout, 'hello\n')
  t.match(result.stderr, /^oops$/m)
  t.equal(result.code, 3)
})

t.test('compression is never negotiated: ssh -C gets none, and a client that insists on zlib is refused', async (t) => {
  const compressed = await run('ssh', ['-C', '-v', ...sshArgs(good), 'echo compressed'])
  t.equal(compressed.stdout, 'compressed\n', 'ssh -C works')
  t.match(compressed.stderr, /compression: none/, 'with no compression')
  const insisting = await new Promise<Error | undefined>((resolve) => {
    const client = new ssh2.Client()
    client.once('ready', () => {
      client.end()
      resolve(undefined)
    })
    client.once('error', resolve)
    client.connect({ host: '127.0.0.1', port, username: 'root', algorithms: { compress: ['zlib@openssh.com', 'zlib'] }, hostVerifier: () => true })
  })
  t.match(insisting, { level: 'handshake' }, 'no algorithm in common: the handshake fails')
})

t.test('exec passes standard input through, with flow control', async (t) => {
  t.equal((await ssh(good, ['cat'], 'abc\n')).stdout, 'abc\n')
  const big = Buffer.alloc(4 << 20, 'x')
  const counted = await ssh(good, ['wc -c'], big)
  t.equal(counted.stdout.trim(), String(big.length))
  t.equal(counted.code, 0)
})

t.test('exec runs as the login with its environment; only LANG and LC_* pass', async (t) => {
  const result = await ssh(good, ['-o', 'SetEnv=LANG=C.UTF-8 LC_TIME=C FOO=bar', 'echo "$USER $LOGNAME $HOME $SHELL $(id -u) $(pwd)"; echo "$LANG|$LC_TIME|$FOO"'])
  const root = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((line) => line.startsWith('root:'))!
    .split(':')
  t.equal(result.stdout, `root root ${TEST_HOME} ${root[6]} 0 ${TEST_HOME}\nC.UTF-8|C|\n`)
})

t.test("the administrator's variables (/etc/environment, /etc/default/locale) reach every session; the client's LANG wins, and none replaces the login's own", async (t) => {
  writeFileSync(join(dir, 'environment'), 'PATH="/opt/site/bin:/usr/bin:/bin"\nhttp_proxy=http://proxy.example:3128\n# a comment\nHOME=/elsewhere\nSSH_CLIENT=forged\n')
  writeFileSync(join(dir, 'locale'), 'LANG=de_DE.UTF-8\nLC_TIME=en_GB.UTF-8\n')
  t.teardown(() => {
    rmSync(join(dir, 'environment'), { force: true })
    rmSync(join(dir, 'locale'), { force: true })
  })
  const fromFiles = await ssh(good, ['echo "$PATH|$http_proxy|$LANG|$LC_TIME|$HOME|$SSH_CLIENT"'])
  const [path, proxy, lang, time, home, client] = fromFiles.stdout.trim().split('|')
  t.same([path, proxy, lang, time], ['/opt/site/bin:/usr/bin:/bin', 'http://proxy.example:3128', 'de_DE.UTF-8', 'en_GB.UTF-8'])
  t.equal(home, TEST_HOME, "the login's own HOME")
  t.match(client, /^127\.0\.0\.1 \d+ 0$/, 'the connection as the server saw it')
  const clientLang = await ssh(good, ['-o', 'SetEnv=LANG=C.UTF-8', 'echo "$LANG|$LC_TIME"'])
  t.equal(clientLang.stdout, 'C.UTF-8|en_GB.UTF-8\n', "the client's LANG over the device's")
})

t.test("exec learns the connection's addresses as sshd tells them, and the user and session behind it", async (t) => {
  const result = await ssh(good, ['echo "$SSH_CLIENT|$SSH_CONNECTION|$WARREN_USER|$WARREN_SESSION_ID"'])
  const [client, connection, user, sessionId] = result.stdout.trim().split('|')
  // Reached over TCP, the node sees the client's port; the server's side is not told.
  t.match(client, /^127\.0\.0\.1 [1-9]\d* 0$/)
  t.equal(connection, `${client.split(' ').slice(0, 2).join(' ')} 0.0.0.0 0`)
  t.equal(user, 'test-good')
  t.match(sessionId, /^[0-9a-f-]{36}$/)
})

t.test('a login is looked up once per connection: for the key OpenSSH offers, then for its signature', async (t) => {
  lookups = 0
  const result = await ssh(good, ['-v', 'true'])
  t.equal(result.code, 0)
  t.match(result.stderr, /Server accepts key/, 'OpenSSH asked whether the key would do before it signed')
  t.equal(lookups, 1)
})

t.test('a command killed by a signal reports it', async (t) => {
  const result = await ssh(good, ['-v', 'kill -TERM $$'])
  t.match(result.stderr, /rtype exit-signal/)
  t.equal(result.code, 255, 'OpenSSH exits with 255 when the remote command was killed')
})

t.test('logins without an acceptable certificate are refused', async (t) => {
  const cases: Array<[string, string, string | undefined, RegExp]> = [
    ['expired certificate', identity('expired', { validBefore: new Date(Date.now() - 60_000) }), 'root', /has expired/],
    ['login not among the principals', good, 'nobody', /does not list principal/],
    ['certificate from another CA', identity('other-ca', { caKey: otherCA.privateKey }), 'root', /untrusted CA/],
    ['plain key without a certificate', identity('plain', false), 'root', /plain public key is not accepted/],
    ['login unknown on the node', identity('ghost', { principals: ['warren-no-such-user'] }), 'warren-no-such-user', /no such login/],
  ]
  for (const [name, key, login, logged] of cases) {
    logLines.length = 0
    const result = await ssh(key, ['true'], undefined, login)
    t.not(result.code, 0, name)
    t.match(result.stderr, /Permission denied/, name)
    // Routine refusals are logged when the connection ends.
    await waitFor(`${name}: the log`, () => logged.test(logLines.join('')))
  }
  t.notMatch(logLines.join(''), /AAAA/, 'no key material in the log')
})

/** A certificate whose access (the user's roles resolved) is `access`, its logins the principals. */
function withAccess(name: string, access: Partial<Access>): string {
  const full: Access = {
    logins: ['root'],
    nodes: [],
    deny_nodes: [],
    ports: [],
    deny_ports: [],
    admin: false,
    local_forwarding: true,
    remote_forwarding: false,
    agent_forwarding: false,
    ...access,
    // Each role here allows all its logins and ports on the nodes it selects, unless given.
    rules: access.rules ?? (access.nodes ?? []).map((nodes) => ({ nodes, logins: access.logins ?? ['root'], ports: access.ports ?? [] })),
  }
  return identity(name, { principals: full.logins, extensions: sshAccessExtensions(full) })
}

t.test("the user's roles in the certificate are judged against this node's labels", async (t) => {
  const lab = await ssh(withAccess('role-lab', { nodes: [{ env: ['lab'] }] }), ['echo in'])
  t.equal(lab.stdout, 'in\n', 'a role that allows env=lab logs in')
  const cases: Array<[string, string, RegExp]> = [
    ['another env', withAccess('role-prod', { nodes: [{ env: ['prod'] }] }), /the user's roles do not allow this node/],
    ['a deny rule', withAccess('role-deny', { nodes: [{ '*': ['*'] }], deny_nodes: [{ env: ['lab'] }] }), /the user's roles deny this node/],
    ['no node at all', withAccess('role-none', {}), /the user's roles do not allow this node/],
    ['malformed access', identity('role-bad', { extensions: { 'warren-access@warren': '{"logins":' } }), /the certificate's access is malformed/],
  ]
  for (const [name, key, logged] of cases) {
    logLines.length = 0
    const result = await ssh(key, ['true'])
    t.not(result.code, 0, name)
    t.match(result.stderr, /Permission denied/, name)
    await waitFor(`${name}: the log`, () => logged.test(logLines.join('')))
  }
})

// Ptys come from the agent itself with perl, and from util-linux `script` on a system without perl.
for (const mode of ['perl', 'script'] as const) {
  t.test(`exec with a pty runs on a real terminal, its controlling terminal (${mode})`, async (t) => {
    perlPath = mode === 'perl' ? findPerl() : undefined
    // Without a local terminal OpenSSH sends a 0x0 window and the pty keeps the kernel's default.
    // /dev/tty opens only for a process with a controlling terminal (job control needs one).
    const bare = await ssh(good, ['-tt', 'tty; stty size; echo "$TERM"; : </dev/tty && echo controlling; echo "$SSH_TTY"'])
    t.match(bare.stdout, /^\/dev\/pts\/\d+\r\n0 0\r\n.*\r\ncontrolling\r\n/)
    t.equal(bare.code, 0)
    const lines = bare.stdout.split('\r\n')
    t.equal(lines[4], lines[0], 'SSH_TTY names the terminal, as sshd sets it')
    // Inside a terminal of its own, OpenSSH sends its size and TERM, and they arrive.
    const sized = await run(
      'script',
      ['-q', '-e', '-c', `stty rows 33 cols 111; exec env TERM=xterm-test ssh ${sshArgs(good).join(' ')} -t 'tty; stty size; echo $TERM; exit 7'`, '/dev/null'],
      undefined,
      true,
    )
    t.match(sized.stdout, /\/dev\/pts\/\d+\r\n33 111\r\nxterm-test\r\n/)
    t.equal(sized.code, 7)
  })

  t.test(`a login whose shell is no sh (tcsh) gets its terminal, SSH_TTY and its command (${mode})`, { skip: existsSync('/bin/tcsh') ? false : 'needs tcsh' }, async (t) => {
    perlPath = mode === 'perl' ? findPerl() : undefined
    loginShell = '/bin/tcsh'
    t.teardown(() => {
      loginShell = undefined
    })
    const command = await ssh(good, ['-tt', 'echo $shell; tty; echo $SSH_TTY'])
    const [shell, tty, told] = command.stdout.split('\r\n')
    t.same([shell, told], ['/bin/tcsh', tty], `the command ran in tcsh, on its terminal (${command.stderr.trim()})`)
    t.match(tty, /^\/dev\/pts\/\d+$/)
    const interactive = await ssh(good, ['-tt'], 'echo $shell $SSH_TTY\nexit 3\n')
    t.match(interactive.stdout, /\/bin\/tcsh \/dev\/pts\/\d+/, 'a login shell too')
    t.equal(interactive.code, 3)
  })

  t.test(`an interactive shell with a pty (${mode})`, async (t) => {
    perlPath = mode === 'perl' ? findPerl() : undefined
    const result = await ssh(good, ['-tt'], 'echo $((6*7))\nexit 5\n')
    t.match(result.stdout, /^42\r$/m)
    t.equal(result.code, 5)
  })

  t.test(`window changes resize the pty (${mode})`, async (t) => {
    perlPath = mode === 'perl' ? findPerl() : undefined
    // OpenSSH runs inside a terminal that the test resizes with stty; it forwards the change.
    const marker = join(dir, 'resize-tty')
    const client = spawn('script', ['-q', '-c', `tty > ${marker}; stty rows 20 cols 70; exec ssh ${sshArgs(good).join(' ')} -t`, '/dev/null'], {
      stdio: 'pipe',
      env: { ...process.env, TERM: 'xterm-test' },
    })
    let output = ''
    client.stdout.on('data', (chunk) => {
      output += chunk
    })
    const exited = new Promise<number | null>((resolve) => client.on('close', resolve))
    client.stdin.write('stty size\n')
    await waitFor('the initial size', () => /^20 70\r$/m.test(output))
    const localTty = readFileSync(marker, 'utf8').trim()
    spawnSync('stty', ['-F', localTty, 'rows', '41', 'cols', '132'])
    await waitFor('the new size', async () => {
      client.stdin.write('stty size\n')
      await sleep(100)
      return /^41 132\r$/m.test(output)
    })
    client.stdin.end('exit\n')
    t.equal(await exited, 0)
  })

  t.test(`output written just before the exit arrives whole, and a background job does not hold the session open (${mode})`, async (t) => {
    perlPath = mode === 'perl' ? findPerl() : undefined
    const result = await ssh(good, ['-tt', 'seq 100000; (trap "" HUP; exec sleep 303) & exit 3'])
    t.match(result.stdout, /\r\n99999\r\n100000\r\n$/)
    t.equal(result.code, 3)
    spawnSync('pkill', ['-x', '-f', 'sleep 303'])
  })

  t.test(`a pty belongs to the login it was made for (${mode})`, async (t) => {
    perlPath = mode === 'perl' ? findPerl() : undefined
    const login = testLogin()
    const key = identity(`pty-${mode}`, { principals: [login], extensions: { 'permit-pty': '' } })
    const result = await ssh(key, ['-tt', 'id -un; stat -c %U "$(tty)"'], undefined, login)
    t.equal(result.stdout, `${login}\r\n${login}\r\n`)
    t.equal(result.code, 0)
  })
}

t.test('a shell without a pty runs over pipes', async (t) => {
  const result = await ssh(good, ['-T'], 'tty; echo $((6*7))\nexit 4\n')
  t.equal(result.stdout, 'not a tty\n42\n')
  t.equal(result.code, 4)
})

t.test('a certificate without permit-pty gets no pty', async (t) => {
  const key = identity('no-pty', { extensions: { 'permit-port-forwarding': '' } })
  logLines.length = 0
  const result = await ssh(key, ['-tt', 'tty'])
  // With -tt OpenSSH gives up when the pty is refused.
  t.equal(result.code, 255)
  t.match(result.stderr, /PTY allocation request failed/)
  t.match(logLines.join(''), /SSH pty refused: the certificate lacks permit-pty/)
})

t.test('local port forwarding reaches a port on the node', async (t) => {
  const echo = createServer((socket) => socket.pipe(socket))
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
  t.teardown(() => echo.close())
  const echoPort = (echo.address() as AddressInfo).port

  async function forward(key: string) {
    const localPort = await freePort()
    const client = spawn('ssh', [...sshArgs(key), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${localPort}:127.0.0.1:${echoPort}`], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    client.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    const exited = new Promise((resolve) => client.on('close', resolve))
    // SIGKILL: OpenSSH 9.2 can miss a SIGTERM that lands while it is between polls.
    t.teardown(async () => {
      client.kill('SIGKILL')
      await exited
    })
    await waitFor('the forward', () => tryConnect(localPort))
    return { localPort, stderr: () => stderr }
  }

  const allowed = await forward(good)
  const socket = connect(allowed.localPort, '127.0.0.1')
  socket.write('ping through the tunnel')
  t.equal(await readSome(socket, 23), 'ping through the tunnel')
  socket.destroy()

  const refused = await forward(identity('no-forwarding', { extensions: { 'permit-pty': '' } }))
  const denied = connect(refused.localPort, '127.0.0.1')
  denied.write('ping')
  t.equal(await readSome(denied, 4), '', 'the forwarded connection is closed without data')
  await waitFor('the refusal', () => /open failed/.test(refused.stderr()))
  t.match(logLines.join(''), /SSH port forwarding refused: the certificate lacks permit-port-forwarding/)
})

t.test("ssh -L to a declared port needs the user's roles to allow its name", async (t) => {
  const echo = createServer((socket) => socket.pipe(socket))
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
  t.teardown(() => echo.close())
  webuiPort = (echo.address() as AddressInfo).port
  t.teardown(() => {
    webuiPort = -1
  })

  // A port the node does not declare, which `ssh_service.port_forwarding: any` lets through.
  const undeclared = createServer((socket) => socket.pipe(socket))
  await new Promise<void>((resolve) => undeclared.listen(0, '127.0.0.1', resolve))
  t.teardown(() => undeclared.close())
  const undeclaredPort = (undeclared.address() as AddressInfo).port

  async function echoVia(key: string, port = webuiPort): Promise<string> {
    const localPort = await freePort()
    const client = spawn('ssh', [...sshArgs(key), '-N', '-L', `${localPort}:127.0.0.1:${port}`], { stdio: 'ignore' })
    const exited = new Promise((resolve) => client.on('close', resolve))
    try {
      await waitFor('the forward', () => tryConnect(localPort))
      const socket = connect(localPort, '127.0.0.1')
      socket.write('ping')
      return await readSome(socket, 4)
    } finally {
      client.kill('SIGKILL')
      await exited
    }
  }

  t.equal(await echoVia(withAccess('port-webui', { nodes: [{ env: ['lab'] }], ports: ['webui'] })), 'ping', 'ports: [webui] reaches it')
  logLines.length = 0
  t.equal(await echoVia(withAccess('port-other', { nodes: [{ env: ['lab'] }], ports: ['grafana'] })), '', 'ports: [grafana] does not')
  t.match(logLines.join(''), /SSH port forwarding refused: the user's roles do not allow the port "webui"/)
  const denied = withAccess('port-denied', { nodes: [{ env: ['lab'] }], ports: ['*'], deny_ports: ['webui'] })
  t.equal(await echoVia(denied), '', 'a deny rule overrides *')
  t.equal(await echoVia(withAccess('every-port', { nodes: [{ env: ['lab'] }], ports: ['*'] })), 'ping', '* reaches a port the node does not declare')
  // Another spelling of the denied port's address (localhost, 127.1, the node's LAN address)
  // would be such a port: with any port denied, * no longer reaches undeclared ones.
  logLines.length = 0
  t.equal(await echoVia(denied, undeclaredPort), '', 'but not with a port denied')
  t.match(logLines.join(''), /SSH port forwarding refused: the user's roles deny some of the node's ports/)
})

t.test("the sftp subsystem runs OpenSSH's sftp-server as a command runs; its file operations are read from the session, not its log", async (t) => {
  const system = sftpServerPath
  t.teardown(() => {
    sftpServerPath = system
  })
  // A stand-in that shows what it runs as and with, logs what looks like an operation and exits with a status.
  const fake = join(dir, 'fake-sftp-server')
  writeFileSync(fake, '#!/bin/sh\necho "$(id -un) $HOME $(pwd) $*"\necho \'remove name "gone.txt"\' >&2\necho other >&2\nexit 7\n', { mode: 0o755 })
  sftpServerPath = fake
  fileOperations.length = 0
  const ran = await ssh(good, ['-s', 'sftp'])
  t.equal(ran.code, 7)
  t.equal(ran.stdout, `root ${TEST_HOME} ${TEST_HOME} -e\n`, 'as the login, in its home, logging to stderr')
  t.equal(ran.stderr, '', "the server's log is not the client's")
  t.same(fileOperations, [], 'what the server says it did is not an operation')

  const target = join(TEST_HOME, 'via-sftp.txt')
  const source = join(dir, 'via-sftp.txt')
  writeFileSync(source, 'sftp\n')
  if (system) {
    sftpServerPath = system
    fileOperations.length = 0
    const copied = await run('sftp', sftpArgs(), `put ${source} ${target}\n`)
    t.equal(copied.code, 0, copied.stderr)
    t.equal(readFileSync(target, 'utf8'), 'sftp\n')
    t.match(fileOperations, [
      { operation: 'open', path: target, login: 'root', keyId: 'test-good', remote: /^127\.0\.0\.1:\d+$/ },
      { operation: 'write', path: target, bytes: 5, login: 'root' },
    ])
    rmSync(target)
  }
  t.not((await ssh(good, ['-s', 'no-such-subsystem'])).code, 0, 'an unknown subsystem')
})

t.test("without OpenSSH's sftp-server, Warren's own serves the subsystem", async (t) => {
  const system = sftpServerPath
  t.teardown(() => {
    sftpServerPath = system
  })
  sftpServerPath = undefined
  fileOperations.length = 0
  const target = join(TEST_HOME, 'via-builtin.txt')
  const source = join(dir, 'via-builtin.txt')
  writeFileSync(source, 'builtin\n')
  const copied = await run('sftp', sftpArgs(), `put ${source} via-builtin.txt\nrename via-builtin.txt moved.txt\n`)
  t.equal(copied.code, 0, copied.stderr)
  t.equal(readFileSync(join(TEST_HOME, 'moved.txt'), 'utf8'), 'builtin\n', 'relative to the home')
  t.notOk(existsSync(target))
  t.match(fileOperations, [
    { operation: 'open', path: target, login: 'root', keyId: 'test-good' },
    { operation: 'write', path: target, bytes: 8 },
    { operation: 'rename', path: target, target: join(TEST_HOME, 'moved.txt') },
  ])
})

t.test("an SFTP session's audit events carry how a file was opened, and an operation whose outcome the node could not tell says so", async (t) => {
  const system = sftpServerPath
  t.teardown(() => {
    sftpServerPath = system
  })
  sftpServerPath = undefined
  const sftpEvents = () => auditEvents.filter((event) => event.type === 'sftp').map(({ operation, path, flags, outcome }) => ({ operation, path, flags, outcome }))
  auditEvents.length = 0
  const source = join(dir, 'flags.txt')
  writeFileSync(source, 'flags\n')
  const copied = await run('sftp', sftpArgs(), `put ${source} flags.txt\n`)
  t.equal(copied.code, 0, copied.stderr)
  t.match(sftpEvents(), [{ operation: 'open', path: join(TEST_HOME, 'flags.txt'), flags: 'write,create,truncate', outcome: undefined }])

  // A request of a type the node cannot pair with its answer: the removal after it is
  // recorded as asked, and as not known to have been done, not as done.
  auditEvents.length = 0
  const victim = join(TEST_HOME, 'flags.txt')
  const hostile = Buffer.concat([packet(FXP.INIT, uint32(3)), packet(99, uint32(1)), packet(FXP.REMOVE, uint32(2), sshString(victim))])
  await ssh(good, ['-s', 'sftp'], hostile)
  t.notOk(existsSync(victim), 'the server did remove it')
  t.same(sftpEvents(), [{ operation: 'remove', path: victim, flags: undefined, outcome: 'unknown' }])
})

t.test('remote port forwarding is refused', async (t) => {
  const result = await ssh(good, ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', '0:127.0.0.1:9'])
  t.not(result.code, 0)
  t.match(result.stderr, /remote port forwarding failed/)
})

t.test('a connection over any duplex stream, as the tunnel hands them over', async (t) => {
  await waitFor('earlier connections to close', () => server.activeSessions === 0)
  const bridge = createServer((socket) => {
    const [near, far] = duplexPair()
    // Ends pass through both ways, as a tunnel stream passes FIN.
    socket.pipe(near).pipe(socket)
    server.handleConnection(far, { remoteAddress: 'tunnel:test' })
  })
  await new Promise<void>((resolve) => bridge.listen(0, '127.0.0.1', resolve))
  t.teardown(() => bridge.close())
  const bridgePort = (bridge.address() as AddressInfo).port
  writeFileSync(knownHosts, `[127.0.0.1]:${bridgePort} ${sshPublicKeyLine(createPublicKey(hostKey.privateKey))}\n`, { flag: 'a' })
  logLines.length = 0
  const args = sshArgs(good).map((arg) => (arg === String(port) ? String(bridgePort) : arg))
  const result = await run('ssh', [...args, 'echo over a stream'])
  t.equal(result.stdout, 'over a stream\n')
  t.match(logLines.join(''), /SSH login accepted .*remote=tunnel:test/)
  await waitFor('the stream to close', () => server.activeSessions === 0)
})

t.test('a stream the proxy opened for one user logs in only that user', async (t) => {
  const streamFor = async (user: string) => {
    const bridge = createServer((socket) => {
      const [near, far] = duplexPair()
      socket.pipe(near).pipe(socket)
      server.handleConnection(far, { remoteAddress: 'tunnel:test', user })
    })
    await new Promise<void>((resolve) => bridge.listen(0, '127.0.0.1', resolve))
    t.teardown(() => bridge.close())
    const bridgePort = (bridge.address() as AddressInfo).port
    writeFileSync(knownHosts, `[127.0.0.1]:${bridgePort} ${sshPublicKeyLine(createPublicKey(hostKey.privateKey))}\n`, { flag: 'a' })
    return sshArgs(good).map((arg) => (arg === String(port) ? String(bridgePort) : arg))
  }
  const own = await run('ssh', [...(await streamFor('test-good')), 'echo own'])
  t.equal(own.stdout, 'own\n', "the certificate of the stream's user logs in")
  const other = await run('ssh', [...(await streamFor('someone-else')), 'echo other'])
  t.not(other.code, 0, "another user's certificate is refused on it")
  t.equal(other.stdout, '', 'and runs nothing')
  await waitFor('the streams to close', () => server.activeSessions === 0)
})

t.test('processes end with their connection', async (t) => {
  await waitFor('earlier connections to close', () => server.activeSessions === 0)
  const client = spawn('ssh', [...sshArgs(good), 'sleep 301'], { stdio: 'ignore' })
  await waitFor('the command', () => processRunning('^sleep 301$'))
  t.equal(server.activeSessions, 1)
  client.kill('SIGKILL')
  await waitFor('the command to be killed', () => !processRunning('^sleep 301$'))
  await waitFor('the connection to close', () => server.activeSessions === 0)
  t.pass('killed')
})

t.test('close() ends every connection and its processes', async (t) => {
  const client = spawn('ssh', [...sshArgs(good), 'sleep 302'], { stdio: 'ignore' })
  const exited = new Promise<number | null>((resolve) => client.on('close', resolve))
  await waitFor('the command', () => processRunning('^sleep 302$'))
  await server.close()
  t.not(await exited, 0, 'the client sees the connection end')
  await waitFor('the command to be killed', () => !processRunning('^sleep 302$'))
  t.equal(server.activeSessions, 0)
})

async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const free = (probe.address() as AddressInfo).port
  await new Promise((resolve) => probe.close(resolve))
  return free
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Up to `length` bytes, or fewer if the socket ends first. */
function readSome(socket: Socket, length: number): Promise<string> {
  return new Promise((resolve) => {
    let data = ''
    socket.on('data', (chunk) => {
      data += chunk
      if (data.length >= length) resolve(data)
    })
    socket.on('close', () => resolve(data))
    socket.on('error', () => resolve(data))
  })
}
