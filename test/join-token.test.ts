// The join token out of sight once a node has joined: not in any process's command line
// (readable by every local user), removed from the config file on request, and not needed
// to start again. Real auth server and node processes; the printed join command runs in sh.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { type AddressInfo, createServer } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { parseConfig } from '../shared/config.ts'
import { AuthProcess, Daemon, freePort, ROOT, startNode, tempDir, waitForNode } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const auth = new AuthProcess()
t.before(() => auth.start())
t.teardown(() => auth.stop())

/** The command lines of `pid` and of every process below it, arguments joined by spaces. */
function commandLines(pid: number): string[] {
  const lines = [readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ')]
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim()
    for (const child of children ? children.split(' ') : []) lines.push(...commandLines(Number(child)))
  }
  return lines
}

/** When the auth server last heard from `nodename` (0: not present). */
async function lastSeen(nodename: string): Promise<number> {
  const { nodes } = await auth.api<{ nodes: { nodename: string; last_seen: number }[] }>('GET', '/v1/nodes')
  return nodes.find((node) => node.nodename === nodename)?.last_seen ?? 0
}

/** Starts the node again with `args` (no token) and waits until it reports its presence. */
async function restartsWithoutToken(t: Test, nodename: string, args: string[]): Promise<void> {
  const since = Date.now()
  const again = startNode(args)
  t.teardown(() => again.stop())
  await again.waitFor(`${nodename} to heartbeat again`, async () => (await lastSeen(nodename)) > since)
  t.ok(again.running, 'a restart needs only the stored identity')
}

/** The JSON log entries a daemon wrote to standard error. */
function logEntries(daemon: Daemon): Record<string, unknown>[] {
  return daemon.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line))
}

t.test('a token given with --token=VALUE leaves the command line once the node has joined', async (t) => {
  const token = await auth.token()
  const pin = await auth.pin()
  const dataDir = tempDir()
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, `--token=${token}`, `--ca-pin=${pin}`, '--nodename=pi-argv'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'pi-argv')
  t.ok(node.running, 'the node runs on, same PID')
  const lines = commandLines(node.child.pid!)
  t.match(lines[0], /start --roles=node .*--nodename=pi-argv/, 'the process is the node')
  t.same(
    lines.filter((line) => line.includes(token)),
    [],
    'no command line holds the token',
  )
  await node.stop()
  await restartsWithoutToken(t, 'pi-argv', [`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, `--ca-pin=${pin}`, '--nodename=pi-argv'])
})

t.test('with more roles in the process, the token leaves its command line too', async (t) => {
  const token = await auth.token(['tokens', 'add', '--type=node,proxy'])
  const dataDir = tempDir()
  const config = join(dataDir, 'warren.yaml')
  writeFileSync(
    config,
    `version: v1\ndata_dir: ${dataDir}\nproxy_service:\n  web_listen_addr: 127.0.0.1:${await freePort()}\n  tunnel_listen_addr: 127.0.0.1:${await freePort()}\n`,
  )
  const both = new Daemon([
    'start',
    '--roles=proxy,node',
    `--config=${config}`,
    `--auth-server=${auth.address}`,
    `--token=${token}`,
    `--ca-pin=${await auth.pin()}`,
    '--nodename=pi-roles',
  ])
  t.teardown(() => both.stop())
  await waitForNode(auth, 'pi-roles')
  t.ok(both.running, 'the process runs on, same PID')
  t.same(
    commandLines(both.child.pid!).filter((line) => line.includes(token)),
    [],
    'no command line holds the token',
  )
})

t.test('the join command that nodes add prints runs in sh and keeps the token out of sight', async (t) => {
  const invite = (await auth.ctl(['nodes', 'add'])).stdout
  const token = /The invite token: (\S+)/.exec(invite)![1]
  const command = /^> (warren start [\s\S]*?^EOF$)/m.exec(invite)?.[1]
  t.ok(command, 'a join command is printed')
  // `warren` on the PATH, as installed; the data dir and name keep this test's node apart.
  const bin = tempDir()
  const dataDir = tempDir()
  writeFileSync(join(bin, 'warren'), `#!/bin/sh\nexec '${process.execPath}' '${join(ROOT, 'cli/warren.ts')}' "$@" --data-dir='${dataDir}' --nodename=pi-stdin\n`)
  chmodSync(join(bin, 'warren'), 0o755)
  // From a file, as pasted into a terminal: `sh -c COMMAND` would put the token in sh's arguments.
  const script = join(bin, 'join.sh')
  writeFileSync(script, command! + '\n')
  const shell = spawn('/bin/sh', [script], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  shell.stderr.on('data', (chunk) => (stderr += chunk))
  const exited = once(shell, 'exit')
  t.teardown(async () => {
    if (shell.exitCode === null) {
      for (const child of readFileSync(`/proc/${shell.pid}/task/${shell.pid}/children`, 'utf8').trim().split(' ').filter(Boolean)) process.kill(Number(child), 'SIGTERM')
      await exited
    }
  })
  await waitForNode(auth, 'pi-stdin').catch((error) => {
    throw new Error(`${error.message}\n${stderr}`)
  })
  const lines = commandLines(shell.pid!)
  t.ok(
    lines.some((line) => line.includes('--token=- ')),
    'the node is running from the printed command',
  )
  t.same(
    lines.filter((line) => line.includes(token)),
    [],
    'neither the shell nor the node shows the token',
  )
})

/** A node config file holding the token, as `warren install` writes one; returns its path and text. */
function configWithToken(dataDir: string, nodename: string, token: string, pin: string): { path: string; text: string } {
  const path = join(dataDir, 'warren.yaml')
  const text = [
    "# This device's Warren config.",
    'version: v1',
    `data_dir: ${dataDir}`,
    `nodename: ${nodename}`,
    `auth_token: ${token}   # the invite from warrenctl nodes add`,
    `ca_pin: ${pin}`,
    `auth_servers: ["${auth.address}"]`,
    'labels: { site: lab }',
    'log: { format: json }',
    '',
  ].join('\n')
  writeFileSync(path, text, { mode: 0o600 })
  return { path, text }
}

t.test('--forget-token removes the token from the config file after the join', async (t) => {
  const pin = await auth.pin()
  const dataDir = tempDir()
  const config = configWithToken(dataDir, 'pi-forget', await auth.token(), pin)
  const node = startNode([`--config=${config.path}`, '--forget-token'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'pi-forget')
  const after = readFileSync(config.path, 'utf8')
  const { authToken, ...rest } = parseConfig(after, config.path)
  t.equal(authToken, undefined, 'auth_token is gone')
  const { authToken: _before, ...expected } = parseConfig(config.text, config.path)
  t.same(rest, expected, 'everything else is as it was')
  t.match(after, /^# This device's Warren config\.$/m, 'comments stay')
  t.equal(statSync(config.path).mode & 0o777, 0o600, 'so does the mode')
  t.ok(
    logEntries(node).some((entry) => entry.invite_source === config.path && entry.level === 'info'),
    'the log says where the token was removed from',
  )
  await node.stop()
  await restartsWithoutToken(t, 'pi-forget', [`--config=${config.path}`])
})

t.test('without --forget-token the config file is unchanged and a warning says the token is still there', async (t) => {
  const dataDir = tempDir()
  const config = configWithToken(dataDir, 'pi-keep', await auth.token(), await auth.pin())
  const node = startNode([`--config=${config.path}`])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'pi-keep')
  t.equal(readFileSync(config.path, 'utf8'), config.text, 'the file is unchanged')
  const warnings = logEntries(node).filter((entry) => entry.level === 'warn' && entry.invite_source === config.path)
  t.equal(warnings.length, 1, 'one warning names the config file')
})

t.test('--forget-token deletes a token file given with --token=/path', async (t) => {
  const dataDir = tempDir()
  const tokenFile = join(tempDir(), 'token')
  writeFileSync(tokenFile, `${await auth.token()}\n`, { mode: 0o600 })
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, `--token=${tokenFile}`, `--ca-pin=${await auth.pin()}`, '--nodename=pi-file', '--forget-token'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'pi-file')
  t.notOk(existsSync(tokenFile), 'the token file is gone')
})

t.test('bad input: --token=- with nothing on standard input', async (t) => {
  const dataDir = tempDir()
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, '--token=-', '--nodename=pi-empty'])
  t.not(await node.exited, 0)
  t.match(node.stderr, /no join token on standard input \(--token=-\)/)
  t.notOk(existsSync(join(dataDir, 'identity', 'identity.json')), 'nothing is stored')
})

t.test('a secret on the command line is out of sight while the command still waits: a join that hangs, a sign-up', async (t) => {
  // A server that takes connections and never answers: the commands wait on it.
  const silent = createServer((socket) => socket.on('error', () => {}))
  silent.listen(0, '127.0.0.1')
  await once(silent, 'listening')
  t.teardown(() => silent.close())
  const address = `127.0.0.1:${(silent.address() as AddressInfo).port}`
  const commands = {
    'warren start --token': ['start', `--data-dir=${tempDir()}`, '--roles=node', `--auth-server=${address}`, '--token=SECRET-join-0123456789'],
    'warren login --invite': ['login', `--proxy=${address}`, '--invite=SECRET-invite-0123456789'],
  }
  for (const [what, args] of Object.entries(commands)) {
    const child = spawn(process.execPath, [join(ROOT, 'cli/warren.ts'), ...args], { stdio: ['pipe', 'ignore', 'ignore'] })
    t.teardown(() => child.kill('SIGKILL'))
    // Judged on one reading: a title being rewritten can read empty for a moment.
    let lines: string[] = []
    await until(`${what} to hide its secret`, () => {
      lines = commandLines(child.pid!)
      return lines.length > 0 && lines[0] !== '' && lines.every((line) => !line.includes('SECRET'))
    })
    t.equal(child.exitCode, null, `${what}: still waiting`)
    t.match(lines[0], args[0], `${what}: the command is still named`)
  }
})
