// `npm run quickstart`: the whole job on this machine, in a fresh temporary directory —
// an auth server and a proxy in one process, a join token, a node that joins through the
// proxy's web port and keeps a reverse tunnel, the admin's view, and a command run on the
// node over SSH through the proxy. Each step says what it means and what to type on real
// machines; everything is stopped and removed at the end.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { WarrenStatus } from '../shared/status.ts'
import { readStatus, statusSocketPath } from '../shared/status-socket.ts'

const ROOT = resolve(import.meta.dirname, '..')
const WARREN = join(ROOT, 'cli/warren.ts')
const WARRENCTL = join(ROOT, 'cli/warrenctl.ts')
const work = mkdtempSync(join(tmpdir(), 'warren-quickstart-'))
const clusterDir = join(work, 'cluster')
const nodeDir = join(work, 'node')
const userDir = join(work, 'alice')
const children: ChildProcess[] = []
const STEPS = 6
let stepNumber = 0
let stopping = false

function step(title: string, meaning: string, realCommand?: string): void {
  stepNumber++
  process.stdout.write(`\n[${stepNumber}/${STEPS}] ${title}\n      ${meaning}\n`)
  if (realCommand) process.stdout.write(`      On real machines: ${realCommand}\n`)
}

function show(text: string): void {
  process.stdout.write(text.replace(/^/gm, '      ').replace(/ +$/gm, '') + '\n')
}

/** What the `warren start` using `dataDir` reports on its status socket (undefined until it answers). */
async function statusOf(dataDir: string): Promise<WarrenStatus | undefined> {
  return readStatus<WarrenStatus>(statusSocketPath(dataDir)).catch(() => undefined)
}

function ctl(...args: string[]): string {
  return execFileSync(process.execPath, [WARRENCTL, ...args, `--data-dir=${clusterDir}`], { encoding: 'utf8' })
}

/** `warren ARGS` in the background; `input` is its standard input. Its log is shown if it exits early. */
function daemon(args: string[], input = ''): void {
  const child = spawn(process.execPath, [WARREN, ...args], { stdio: ['pipe', 'ignore', 'pipe'] })
  child.stdin!.end(input)
  let log = ''
  child.stderr!.on('data', (d) => (log += d))
  child.on('exit', (code) => {
    if (!stopping) {
      process.stderr.write(`\nquickstart: "warren ${args.join(' ')}" exited with ${code}:\n${log}`)
      process.exit(1)
    }
  })
  children.push(child)
}

/** Waits for `check`, showing a progress line while it does. */
async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + 60_000
  const spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
  const tty = process.stdout.isTTY
  if (!tty) process.stdout.write(`      … waiting for ${what}\n`)
  for (let i = 0; ; i++) {
    const result = await check()
    if (result) {
      process.stdout.write(`${tty ? '\r' : ''}      ✓ ${what}${' '.repeat(20)}\n`)
      return result
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    if (tty) process.stdout.write(`\r      ${spinner[i % spinner.length]} waiting for ${what}…`)
    await sleep(200)
  }
}

async function main(): Promise<void> {
  step(
    'Start the auth server and a proxy in one process',
    'Auth is the trust core (host and user CAs, tokens, the node registry); the proxy is the public face: one HTTPS port for its API and users, one port for reverse tunnels.',
    'warren start --roles=auth,proxy --config=/etc/warren.yaml',
  )
  writeFileSync(
    join(work, 'cluster.yaml'),
    [
      'version: v1',
      `data_dir: ${clusterDir}`,
      'nodename: quickstart-proxy',
      'auth_service:',
      '  listen_addr: 127.0.0.1:0',
      '  cluster_name: quickstart',
      'proxy_service:',
      '  web_listen_addr: 127.0.0.1:0',
      '  tunnel_listen_addr: 127.0.0.1:0',
      '',
    ].join('\n'),
  )
  daemon(['start', '--roles=auth,proxy', `--config=${join(work, 'cluster.yaml')}`])
  const web = await until('the proxy to listen', async () => (await statusOf(clusterDir))?.proxy?.listen.web)

  step(
    'Create a join token for a node',
    'A short-lived invite; only its hash is stored. The command it prints carries the CA pin, so the node can tell the real cluster from an impostor.',
    'warrenctl nodes add --ttl=30m',
  )
  const invite = ctl('nodes', 'add', '--ttl=5m')
  show(invite.trimEnd())
  const token = /The invite token: (\S+)/.exec(invite)![1]
  const pin = /--ca-pin=(\S+)/.exec(invite)![1]

  step(
    "Join a node through the proxy's web port",
    `The node checks the CA pin, sends the token with fresh public keys, stores its certificates in ${nodeDir}, then dials out to the proxy and keeps a reverse tunnel open: it needs no open port of its own.`,
    `warren start --roles=node --token=- --ca-pin=${pin.slice(0, 20)}… --auth-server=proxy.example.com:3080  (the token on standard input)`,
  )
  daemon(
    ['start', '--roles=node', '--token=-', `--ca-pin=${pin}`, `--auth-server=${web}`, `--data-dir=${nodeDir}`, '--nodename=quickstart-node', '--labels=env=demo'],
    `${token}\n`,
  )
  await until("the node's reverse tunnel", async () => ((await statusOf(nodeDir))?.node?.tunnel?.proxies.length ?? 0) > 0)
  await until('the node to show up in nodes ls', () => ctl('nodes', 'ls').includes('quickstart-node'))

  step(
    "The admin's view, and the node's",
    'warrenctl talks to the auth server with the admin identity in its data dir. "⟵ Tunnel" means the node is reached through its reverse tunnel. On the device, warren status reads what the running node reports about itself: the proxies it holds tunnels to, its certificate.',
    'warrenctl status; warrenctl tokens ls; warrenctl nodes ls; on the device: warren status',
  )
  show('$ warrenctl status\n' + ctl('status'))
  show('$ warrenctl tokens ls\n' + ctl('tokens', 'ls'))
  show('$ warrenctl nodes ls\n' + ctl('nodes', 'ls'))
  show('$ warren status\n' + execFileSync(process.execPath, [WARREN, 'status', `--data-dir=${nodeDir}`], { encoding: 'utf8' }))

  step(
    'Give a user short-lived certificates',
    "The user CA signs an SSH certificate (logins: the OS accounts allowed) and a TLS one the proxy checks; known_hosts lists the nodes' host keys, so ssh verifies them strictly.",
    'warrenctl users add alice --logins=root && warrenctl auth sign --user=alice --ttl=1h --out ~/.warren --format=openssh',
  )
  show(ctl('users', 'add', 'alice', `--logins=${process.env.USER ?? 'root'}`).trimEnd())
  show(ctl('auth', 'sign', '--user=alice', '--ttl=1h', `--out=${userDir}`, '--format=openssh', `--proxy=${web}`).trimEnd())

  const login = process.env.USER ?? 'root'
  step(
    'Run a command on the node over SSH, through the proxy and the tunnel',
    'warren ssh runs your OpenSSH client with Warren as its ProxyCommand; a stock ssh works too with the ssh_config that auth sign wrote.',
    `warren ssh ${login}@quickstart-node uname -a    (or: ssh -F ~/.warren/ssh_config ${login}@quickstart-node)`,
  )
  let hasSsh = true
  try {
    execFileSync('ssh', ['-V'], { stdio: 'ignore' })
  } catch {
    hasSsh = false
  }
  if (!hasSsh) {
    show('(skipped: no OpenSSH client here; install it with "apt-get install openssh-client")')
    return
  }
  const output = execFileSync(process.execPath, [WARREN, 'ssh', `--identity=${userDir}`, `${login}@quickstart-node`, 'echo "hello from $(hostname), as $(whoami)"; uname -sr'], {
    encoding: 'utf8',
  })
  show(`$ warren ssh ${login}@quickstart-node 'echo "hello from $(hostname), as $(whoami)"; uname -sr'\n${output}`)
}

try {
  await main()
  process.stdout.write('\nQuick start complete. Everything ran in a temporary directory, now removed.\n')
} catch (error) {
  process.stderr.write(`\nquickstart failed: ${(error as Error).message}\n`)
  process.exitCode = 1
} finally {
  stopping = true
  for (const child of children.reverse()) {
    child.kill('SIGTERM')
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)))
  }
  rmSync(work, { recursive: true, force: true })
}
