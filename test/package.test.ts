// The single executables that `npm run package` writes to dist/: each one, copied alone
// into an empty directory and run with no Node on PATH, prints its version, answers to
// the name warrenctl, joins a cluster through a proxy's web port and serves SSH through
// its reverse tunnel. The arm64 one runs under qemu-user. The x64 one also runs an auth
// server on etcd, whose client needs files that only the bundle carries, and a proxy that
// gets its web certificate from an ACME server (both are parts loaded only when used) and
// serves the web console's page and script from the executable's own assets.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomBytes, type X509Certificate } from 'node:crypto'
import { accessSync, chmodSync, constants, copyFileSync, existsSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { delimiter, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect as tlsConnect } from 'node:tls'
import { brotliDecompressSync } from 'node:zlib'
import t from 'tap'
import type { WarrenStatus } from '../shared/status.ts'
import { VERSION } from '../shared/version.ts'
import { AuthProcess, freePort, openssh, ProxyProcess, ROOT, type RunResult, signUser, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'
import { ChallTestServer, Pebble, pebbleMissing } from './helpers/pebble.ts'

const ARM64_SYSROOT = '/usr/aarch64-linux-gnu'

interface Target {
  arch: 'x64' | 'arm64'
  binary: string
  /** What runs the binary: nothing for this machine's architecture, else an emulator. */
  runner: string[]
  /** Time for a join and an SSH login, longer under emulation. */
  timeoutMs: number
}

/** An executable of that name on this machine's PATH. */
function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK)
      return join(dir, name)
    } catch {}
  }
  return undefined
}

const x64 = join(ROOT, 'dist/warren-linux-x64')
const arm64 = join(ROOT, 'dist/warren-linux-arm64')
if (!existsSync(x64)) {
  t.plan(0, 'dist/warren-linux-x64 is not built: run "npm run package" first')
} else {
  run()
}

function run(): void {
  t.setTimeout(300_000)
  // The tools the agent's sessions use, and OpenSSH's client for `warren ssh` (env runs its
  // descriptor-passing ProxyCommand), and nothing else: no node.
  const tools = tempDir('warren-tools-')
  for (const name of ['sh', 'script', 'stty', 'ssh', 'env']) {
    const path = onPath(name)
    if (path) symlinkSync(path, join(tools, name))
  }
  const env = { PATH: tools, HOME: process.env.HOME ?? '/root' }

  const auth = new AuthProcess()
  let proxy: ProxyProcess
  let pin = ''
  t.before(async () => {
    await auth.start()
    pin = await auth.pin()
    proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  })
  t.teardown(async () => {
    await proxy?.stop()
    await auth.stop()
  })

  // The budget of bench:footprint (README): the web console's files are in it, compressed.
  t.test('the x64 executable stays within 110,000,000 bytes', async (t) => {
    t.ok(statSync(x64).size <= 110_000_000, `${statSync(x64).size} bytes`)
  })

  const qemu = onPath('qemu-aarch64-static')
  const targets: (Target & { skip?: string })[] = [
    { arch: 'x64', binary: x64, runner: [], timeoutMs: 20_000 },
    {
      arch: 'arm64',
      binary: arm64,
      runner: qemu ? [qemu, '-L', ARM64_SYSROOT] : [],
      timeoutMs: 90_000,
      skip: !existsSync(arm64)
        ? 'dist/warren-linux-arm64 is not built'
        : !qemu
          ? 'qemu-aarch64-static is missing (Debian: qemu-user-static)'
          : !existsSync(join(ARM64_SYSROOT, 'lib/ld-linux-aarch64.so.1'))
            ? `no arm64 libraries in ${ARM64_SYSROOT} (Debian: libc6-arm64-cross, libstdc++6-arm64-cross)`
            : undefined,
    },
  ]
  if (process.arch !== 'x64') targets[0].skip = `this machine is ${process.arch}`

  for (const target of targets) {
    t.test(`warren-linux-${target.arch}`, { skip: target.skip }, async (t) => {
      const dir = install(target.binary)
      const warren = join(dir, 'warren')
      const exec = (name: string, args: string[]) => runFile(target, join(dir, name), args, { cwd: dir, env, timeoutMs: target.timeoutMs })

      const version = await exec('warren', ['version'])
      t.equal(version.code, 0, 'warren version runs', { stderr: version.stderr })
      t.match(
        version.stdout,
        new RegExp(`^Warren v${VERSION.replaceAll('.', '\\.')} node ${process.version} commit ([0-9a-f]{7,}|unknown)\n$`),
        'its own version, the embedded Node and the commit',
      )

      const status = await exec('warrenctl', ['status', `--data-dir=${auth.dataDir}`])
      t.equal(status.code, 0, 'invoked as warrenctl it administers the cluster', { stderr: status.stderr })
      t.match(status.stdout, /^Cluster\s+test-cluster$/m)
      t.match(status.stdout, new RegExp(`^CA pin\\s+${pin}$`, 'm'))

      const nodename = `sea-${target.arch}`
      // After joining, the agent continues in a fresh process image of its own file (cli/start.ts),
      // which the kernel cannot run here when an emulator runs the file: not under qemu.
      const agentEnv = target.runner.length === 0 ? env : { ...env, WARREN_STARTED_AFRESH: '1' }
      const agentDir = tempDir()
      const agent = startFile(
        target,
        warren,
        ['start', '--roles=node', `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${nodename}`, `--data-dir=${agentDir}`],
        { cwd: dir, env: agentEnv },
      )
      t.teardown(() => stop(agent.child))
      const listing = await waitForNode(auth, nodename, target.timeoutMs).catch((error: Error) => {
        throw new Error(`${error.message}\nagent output:\n${agent.output()}`)
      })
      t.match(listing, new RegExp(`^${nodename}\\s+\\S+\\s+⟵ Tunnel`, 'm'), 'the node is present through its tunnel')
      if (target.runner.length === 0) {
        const status = await exec('warren', ['status', `--data-dir=${agentDir}`, '--format=json'])
        t.equal(status.code, 0, 'warren status reads the agent', { stderr: status.stderr })
        const { process: agentProcess } = JSON.parse(status.stdout) as WarrenStatus
        t.same([agentProcess.pid, agentProcess.fresh_image], [agent.child.pid, true], 'after joining, the executable continues as a fresh image of itself')
        t.ok(agentProcess.young_generation_bytes <= 2 * 1024 * 1024, `the executable caps the young generation (${agentProcess.young_generation_bytes} bytes)`)
        const second = await exec('warren', ['start', `--data-dir=${agentDir}`])
        t.equal(second.code, 1, 'a second start on its data dir exits 1')
        t.match(second.stderr, `data dir ${agentDir} is in use by process ${agent.child.pid}`, 'naming the agent, which kept its lock across the new image')
      }

      const profile = await signUser(auth, proxy.web, `user-${target.arch}`)
      const login = await openssh(profile, [`${testLogin()}@${nodename}`, 'echo ok'], { timeoutMs: target.timeoutMs })
      t.equal(login.code, 0, 'ssh exits 0', { stderr: login.stderr })
      t.equal(login.stdout, 'ok\n', 'a command runs over SSH through the tunnel')
      // The executable holds the master end of a session's pty itself (agent/pty.ts).
      const onPty = await openssh(profile, ['-tt', `${testLogin()}@${nodename}`, 'tty; echo $PPID'], { timeoutMs: target.timeoutMs })
      t.match(onPty.stdout, new RegExp(`^/dev/pts/\\d+\r\n${agent.child.pid}\r\n$`), 'a session on a pty, a child of the agent', { stderr: onPty.stderr })

      // The ProxyCommand that the executable writes for OpenSSH runs the executable itself
      // (only where this machine runs the file without an emulator).
      if (target.runner.length === 0) {
        const own = tempDir('warren-user-')
        const signed = await exec('warrenctl', [
          'auth',
          'sign',
          `--user=user-${target.arch}`,
          `--out=${own}`,
          '--format=openssh',
          `--proxy=${proxy.web}`,
          `--data-dir=${auth.dataDir}`,
        ])
        t.equal(signed.code, 0, 'warrenctl auth sign runs', { stderr: signed.stderr })
        t.match(readFileSync(join(own, 'ssh_config'), 'utf8'), new RegExp(`ProxyCommand ${warren} proxy ssh `), 'the ProxyCommand names the executable, not node')
        const viaOwn = await openssh(own, [`${testLogin()}@${nodename}`, 'echo own'], { timeoutMs: target.timeoutMs })
        t.equal(viaOwn.stdout, 'own\n', "ssh through the executable's own ProxyCommand", { stderr: viaOwn.stderr })
        const fdpass = await exec('warren', ['ssh', '--fdpass', `--identity=${own}`, `${testLogin()}@${nodename}`, 'echo fdpass'])
        t.equal(fdpass.stdout, 'fdpass\n', 'warren ssh --fdpass: the executable hands ssh its connection to the proxy', { stderr: fdpass.stderr })
      }
    })
  }

  t.test('an auth server on etcd, from warren-linux-x64', { skip: targets[0].skip ?? etcdUnavailable() }, async (t) => {
    const etcd = await EtcdServer.start()
    t.teardown(() => etcd.stop())
    const dir = install(x64)
    const dataDir = tempDir()
    const config = join(dataDir, 'warren.yaml')
    writeFileSync(
      config,
      [
        'version: v1',
        `data_dir: ${dataDir}`,
        'auth_service:',
        '  enabled: true',
        '  listen_addr: 127.0.0.1:0',
        '  cluster_name: sea-etcd',
        `  storage: { type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${uniquePrefix('sea')}" }`,
      ].join('\n'),
    )
    const server = startFile(targets[0], join(dir, 'warren'), ['start', '--roles=auth', `--config=${config}`], { cwd: dir, env })
    t.teardown(() => stop(server.child))
    const identity = join(dataDir, 'admin', 'identity.json')
    for (let waited = 0; !existsSync(identity); waited += 100) {
      if (server.child.exitCode !== null || waited > 20_000) throw new Error(`the auth server did not start:\n${server.output()}`)
      await sleep(100)
    }
    const status = await runFile(targets[0], join(dir, 'warrenctl'), ['status', `--data-dir=${dataDir}`], { cwd: dir, env, timeoutMs: 20_000 })
    t.match(status.stdout, /^Cluster\s+sea-etcd$/m, 'the auth server runs on etcd', { stderr: status.stderr })
  })
  // The YAML library is a compressed part of the executable (packaging/bundle.ts): read at
  // start and on SIGHUP, with the line of a mistake.
  t.test('a node with a config file, from warren-linux-x64: scp through its own SFTP server, the config read again on SIGHUP', { skip: targets[0].skip }, async (t) => {
    const dir = install(x64)
    // Installed where every login may run it (as /usr/local/bin is): its SFTP server runs as the login.
    chmodSync(dir, 0o755)
    const dataDir = tempDir()
    const config = join(dataDir, 'warren.yaml')
    const write = (labels: string) =>
      writeFileSync(
        config,
        [
          'version: v1',
          `data_dir: ${dataDir}`,
          'nodename: sea-yaml',
          `ca_pin: ${pin}`,
          `auth_servers: ["${proxy.web}"]`,
          `labels: { ${labels} }`,
          // Warren's own SFTP server, a part of the executable that the login's process loads.
          'ssh_service: { sftp_server: builtin }',
          '',
        ].join('\n'),
      )
    write('stage: one')
    const agent = startFile(targets[0], join(dir, 'warren'), ['start', `--config=${config}`, `--token=${await auth.token()}`], { cwd: dir, env })
    t.teardown(() => stop(agent.child))
    t.match(await waitForNode(auth, 'sea-yaml'), /^sea-yaml\s.*stage=one$/m, 'the labels of the config file at start')
    // scp in its default (SFTP) mode, through the executable's own SFTP server and back.
    const profile = await signUser(auth, proxy.web, 'user-sftp')
    const local = join(tempDir(), 'up.bin')
    writeFileSync(local, randomBytes(100_000))
    const remote = `${testLogin()}@sea-yaml:sea-${process.pid}.bin`
    const scp = (args: string[]) =>
      runFile({ ...targets[0], runner: [] }, 'scp', ['-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', ...args], {
        cwd: dir,
        env: process.env as Record<string, string>,
        timeoutMs: 30_000,
      })
    const up = await scp([local, remote])
    t.equal(up.code, 0, 'scp uploads through the executable', { stderr: up.stderr })
    const back = join(tempDir(), 'down.bin')
    const down = await scp([remote, back])
    t.equal(down.code, 0, 'and downloads', { stderr: down.stderr })
    t.ok(readFileSync(back).equals(readFileSync(local)), 'the same bytes')
    const lastReload = async (previous?: string) => {
      for (let waited = 0; waited < 20_000; waited += 100) {
        const status = await runFile(targets[0], join(dir, 'warren'), ['status', `--data-dir=${dataDir}`, '--format=json'], { cwd: dir, env, timeoutMs: 20_000 })
        const parsed = JSON.parse(status.stdout) as WarrenStatus
        const reload = parsed.process.last_reload
        if (reload && reload.time !== previous) return { reload, labels: parsed.node?.labels }
        await sleep(100)
      }
      throw new Error(`no reload:\n${agent.output()}`)
    }
    write('stage: two')
    agent.child.kill('SIGHUP')
    const reloaded = await lastReload()
    t.same([reloaded.reload.ok, reloaded.labels], [true, { stage: 'two' }], 'read again on SIGHUP')
    writeFileSync(config, 'version: v1\nlabels: [not, a, map]\n')
    agent.child.kill('SIGHUP')
    const refused = await lastReload(reloaded.reload.time)
    t.equal(refused.reload.ok, false, 'a bad file is refused')
    t.match(refused.reload.error, /line 2/, 'naming its line')
    t.same(refused.labels, { stage: 'two' }, 'and changes nothing')
  })

  t.test('a proxy with ACME, from warren-linux-x64, against Pebble', { skip: targets[0].skip ?? pebbleMissing() }, async (t) => {
    const domain = 'sea.warren.test'
    const dns = await new ChallTestServer().start()
    t.teardown(() => dns.stop())
    await dns.addA(domain, '127.0.0.1')
    const port = await freePort()
    const pebble = await new Pebble({ dnsServer: dns.dnsAddress, tlsPort: port, httpPort: await freePort() }).start()
    t.teardown(() => pebble.stop())
    const dir = install(x64)
    const dataDir = tempDir()
    const caFile = join(dataDir, 'acme-ca.pem')
    writeFileSync(caFile, pebble.caBundle)
    const config = join(dataDir, 'warren.yaml')
    writeFileSync(
      config,
      [
        'version: v1',
        `data_dir: ${dataDir}`,
        'nodename: sea-proxy',
        `auth_servers: ["${auth.address}"]`,
        `auth_token: ${await auth.token(['tokens', 'add', '--type=proxy'])}`,
        `ca_pin: ${pin}`,
        'proxy_service:',
        '  enabled: true',
        `  web_listen_addr: 127.0.0.1:${port}`,
        `  tunnel_listen_addr: 127.0.0.1:${port}`,
        `  public_addr: ["${domain}:${port}"]`,
        `  acme: { enabled: true, email: ops@warren.test, uri: "${pebble.directoryUrl}", ca_file: "${caFile}" }`,
      ].join('\n'),
    )
    const server = startFile(targets[0], join(dir, 'warren'), ['start', '--roles=proxy', `--config=${config}`], { cwd: dir, env })
    t.teardown(() => stop(server.child))
    for (let waited = 0; !/serving the ACME certificate/.test(server.output()); waited += 100) {
      if (server.child.exitCode !== null || waited > 60_000) throw new Error(`no ACME certificate:\n${server.output()}`)
      await sleep(100)
    }
    const root = await pebble.root()
    const peer = await new Promise<X509Certificate>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, servername: domain, ca: root }, () => {
        resolve(socket.getPeerX509Certificate()!)
        socket.end()
      })
      socket.on('error', reject)
    })
    t.equal(peer.subjectAltName, `DNS:${domain}`, "the executable obtained and serves a certificate that Pebble's root verifies")

    // The web console's page and script come from the executable's own assets, as stored.
    const get = (path: string, encoding: string) =>
      new Promise<{ status: number; encoding?: string; body: Buffer }>((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', port, servername: domain, ca: root, path, headers: { 'accept-encoding': encoding } }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk) => chunks.push(chunk))
          res.on('end', () => resolve({ status: res.statusCode!, encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }))
        })
        req.on('error', reject)
        req.end()
      })
    const page = await get('/web/nodes', 'br')
    t.equal(page.status, 200)
    t.equal(page.encoding, 'br')
    const script = /<script src="(\/web\/assets\/app-\w+\.js)"/.exec(brotliDecompressSync(page.body).toString('utf8'))?.[1]
    t.ok(script, "the console's page names its script")
    const plain = await get(script!, 'identity')
    t.equal(plain.status, 200)
    t.equal(plain.encoding, undefined, 'decompressed for a client without br')
    t.match(plain.body.toString('utf8'), /xterm/, 'the script holds the terminal')
  })
}

/** The file alone in an empty directory (also the working directory), with a warrenctl link to it. */
function install(binary: string): string {
  const dir = tempDir('warren-sea-')
  copyFileSync(binary, join(dir, 'warren'))
  symlinkSync('warren', join(dir, 'warrenctl'))
  return dir
}

function command(target: Target, file: string, args: string[]): [string, string[]] {
  return target.runner.length === 0 ? [file, args] : [target.runner[0], [...target.runner.slice(1), file, ...args]]
}

function runFile(target: Target, file: string, args: string[], options: { cwd: string; env: Record<string, string>; timeoutMs: number }): Promise<RunResult> {
  const [cmd, argv] = command(target, file, args)
  return new Promise((resolve) => {
    execFile(cmd, argv, { cwd: options.cwd, env: options.env, timeout: options.timeoutMs }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr })
    })
  })
}

function startFile(target: Target, file: string, args: string[], options: { cwd: string; env: Record<string, string> }): { child: ChildProcess; output: () => string } {
  const [cmd, argv] = command(target, file, args)
  const child = spawn(cmd, argv, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (d) => (output += d))
  child.stderr!.on('data', (d) => (output += d))
  return { child, output: () => output }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}
