// `npm run quickstart`: a whole cluster on this machine in a fresh data dir — an auth
// server, a join token, a node that joins with it — then the admin's view, and a clean exit.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

const ROOT = resolve(import.meta.dirname, '..')
const WARREN = join(ROOT, 'cli/warren.ts')
const WARRENCTL = join(ROOT, 'cli/warrenctl.ts')
const work = mkdtempSync(join(tmpdir(), 'warren-quickstart-'))
const authDir = join(work, 'auth')
const nodeDir = join(work, 'node')
const children: ChildProcess[] = []

function step(title: string, meaning: string): void {
  process.stdout.write(`\n==> ${title}\n    ${meaning}\n`)
}

function ctl(...args: string[]): string {
  return execFileSync(process.execPath, [WARRENCTL, ...args, `--data-dir=${authDir}`], { encoding: 'utf8' })
}

function daemon(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [WARREN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  child.stderr!.on('data', (d) => (log += d))
  child.on('exit', (code) => {
    if (code && !stopping) {
      process.stderr.write(`\nquickstart: "warren ${args[0]}" exited with ${code}:\n${log}`)
      process.exit(1)
    }
  })
  children.push(child)
  return child
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000
  let dots = 0
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    process.stdout.write(`\r    … waiting for ${what}${'.'.repeat((dots++ % 3) + 1).padEnd(3)}`)
    await sleep(200)
  }
  process.stdout.write(`\r    ✓ ${what}${' '.repeat(12)}\n`)
}

let stopping = false
async function main(): Promise<void> {
  step('Start the auth server', `The cluster's trust core: host and user CAs, join tokens, the node registry. Data dir: ${authDir}`)
  writeFileSync(join(work, 'auth.yaml'), `version: v1\ndata_dir: ${authDir}\nauth_service:\n  enabled: true\n  listen_addr: 127.0.0.1:0\n  cluster_name: quickstart\n`)
  daemon(['start', '--roles=auth', `--config=${join(work, 'auth.yaml')}`])
  const identityFile = join(authDir, 'admin', 'identity.json')
  await until('the auth server', () => existsSync(identityFile))
  const authServer = JSON.parse(readFileSync(identityFile, 'utf8')).auth_server as string
  process.stdout.write(`    On a real machine: warren start --roles=auth --config=/etc/warren.yaml\n`)

  step('Create a join token for a node', 'A short-lived invite; only its hash is stored. The printed command carries the CA pin, so the node can tell the real auth server from an impostor.')
  const invite = ctl('nodes', 'add', '--ttl=5m')
  process.stdout.write(invite.replace(/^/gm, '    '))
  const token = /The invite token: (\S+)/.exec(invite)![1]
  const pin = /--ca-pin=(\S+)/.exec(invite)![1]

  step('Join a node', `The node checks the CA against the pin, sends the token with fresh public keys, and stores its certificates in ${nodeDir}.`)
  daemon(['start', '--roles=node', `--token=${token}`, `--ca-pin=${pin}`, `--auth-server=${authServer}`, `--data-dir=${nodeDir}`, '--nodename=quickstart-node', '--labels=env=demo'])
  await until('the node to join and heartbeat', () => ctl('nodes', 'ls').includes('quickstart-node'))

  step('warrenctl status', 'The cluster name, the version, the CAs and the pin a new node checks.')
  process.stdout.write(ctl('status'))
  step('warrenctl tokens ls', 'Active tokens, shown by a short ID derived from their hash.')
  process.stdout.write(ctl('tokens', 'ls'))
  step('warrenctl nodes ls', 'Nodes whose heartbeat is fresh.')
  process.stdout.write(ctl('nodes', 'ls'))
}

try {
  await main()
  process.stdout.write('\nQuick start complete. Everything ran in a temporary directory that is now removed.\n')
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
