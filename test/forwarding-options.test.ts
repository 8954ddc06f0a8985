// Remote forwarding (`ssh -R`) and agent forwarding (`ssh -A`) through Warren with stock
// OpenSSH, granted by the role options port_forwarding and forward_agent and refused
// without them: a port the node listens on reaches a listener on the client's side; an
// ssh-agent on the client's side answers `ssh-add -l` on the node. The node is this machine,
// so what listens on it is seen from here. Real auth server, proxy, tunnel and node.

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { AuthProcess, freePort, JSON_LOGS, logEntries, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root: the test logs in as a throwaway login')
  process.exit(0)
}
t.setTimeout(120_000)

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
t.teardown(() => proxy.stop())

/** A node whose ssh_service.port_forwarding is `policy`. */
async function node(name: string, policy: string) {
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(config, ['ssh_service:', '  listen_addr: 127.0.0.1:0', `  port_forwarding: ${policy}`, JSON_LOGS].join('\n'))
  const daemon = startNode([`--config=${config}`, `--data-dir=${dir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => daemon.stop())
  await waitForNode(auth, name)
  return daemon
}
const pi = await node('pi-fwd', 'declared')
await node('pi-off', 'off')

const login = testLogin()
const ctlWithInput = (args: string[], input: string) => run(join(ROOT, 'cli/warrenctl.ts'), [...args, `--data-dir=${auth.dataDir}`], { input })
for (const [name, options] of [
  ['remote', 'port_forwarding: true'],
  ['agent', 'forward_agent: true'],
]) {
  const created = await ctlWithInput(['create', '-f', '-'], `kind: role\nversion: v1\nmetadata:\n  name: ${name}\nspec:\n  options:\n    ${options}\n`)
  if (created.code !== 0) throw new Error(`create role ${name}: ${created.stderr}`)
}

/** A user with `roles` (and the built-in access, for the node and login) and its OpenSSH config. */
async function user(name: string, roles: string[]): Promise<string> {
  const added = await auth.ctl(['users', 'add', name, `--logins=${login}`, `--roles=${['access', ...roles].join(',')}`])
  if (added.code !== 0) throw new Error(`users add: ${added.stderr}`)
  const dir = tempDir('warren-user-')
  const signed = await auth.ctl(['auth', 'sign', `--user=${name}`, '--ttl=1h', `--out=${dir}`, '--format=openssh', `--proxy=${proxy.web}`])
  if (signed.code !== 0) throw new Error(`auth sign: ${signed.stderr}`)
  return join(dir, 'ssh_config')
}
const forwarder = await user('forwarder', ['remote', 'agent'])
const plain = await user('plain', [])

/** A listener on the client's side that answers each connection with `reply`. */
const answering = createServer((socket) => socket.end('from the client side\n'))
answering.listen(0, '127.0.0.1')
await once(answering, 'listening')
t.teardown(() => answering.close())
const answeringPort = (answering.address() as { port: number }).port

/** What a connection to 127.0.0.1:port reads, or the error code when nothing listens. */
function readFrom(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (chunk) => (data += chunk))
    socket.on('end', () => resolve(data))
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'))
  })
}

/** `ssh -N -R` held open until `stop`; resolves once OpenSSH says which port the node gave, or when ssh exits. */
function remoteForward(config: string, target: string, listen: number): { ssh: ChildProcess; allocated: Promise<number | undefined>; exited: Promise<number | null> } {
  const ssh = spawn('ssh', ['-F', config, '-o', 'BatchMode=yes', '-o', 'ExitOnForwardFailure=yes', '-N', '-R', `${listen}:127.0.0.1:${answeringPort}`, `${login}@${target}`])
  t.teardown(() => ssh.kill())
  let stderr = ''
  const exited = once(ssh, 'exit').then(([code]) => code as number | null)
  const allocated = new Promise<number | undefined>((resolve) => {
    ssh.stderr!.on('data', (chunk) => {
      stderr += chunk
      const port = /Allocated port (\d+) for remote forward/.exec(stderr)
      if (port) resolve(Number(port[1]))
    })
    void exited.then(() => resolve(undefined))
  })
  return { ssh, allocated, exited }
}

t.test('port_forwarding: true lets ssh -R listen on the node, and a connection there reaches the client side; the audit log has it', async (t) => {
  const { ssh, allocated } = remoteForward(forwarder, 'pi-fwd', 0)
  const port = await allocated
  t.ok(port, 'the node gave a port')
  t.equal(await readFrom(port!), 'from the client side\n')
  ssh.kill()
  const remoteForwards = async () =>
    (await auth.api<{ events: AuditEvent[] }>('GET', '/v1/audit/events?type=port_forward&user=forwarder')).events.filter((event) => event.port === port)
  await until('the forward in the audit log', async () => (await remoteForwards()).length > 0)
  t.match(await remoteForwards(), [{ user: 'forwarder', login, node: 'pi-fwd', direction: 'remote', host: '127.0.0.1', port, session_id: /\S/ }])
})

t.test('a login that is not root gets no privileged port, even with port_forwarding: true', async (t) => {
  const { exited } = remoteForward(forwarder, 'pi-fwd', 999)
  t.not(await exited, 0)
  t.equal(await readFrom(999), 'ECONNREFUSED')
})

t.test('without it, ssh -R fails and nothing listens on the node; the node logs why', async (t) => {
  const port = await freePort()
  const { exited } = remoteForward(plain, 'pi-fwd', port)
  t.not(await exited, 0, 'ExitOnForwardFailure ends ssh')
  t.equal(await readFrom(port), 'ECONNREFUSED', 'nothing listens on the node')
  const refused = () =>
    logEntries(pi.stderr, { request: 'tcpip-forward', login }).some((entry) => /remote forwarding refused: the user's roles do not allow remote forwarding/.test(String(entry.msg)))
  await pi.waitFor('the refusal in the node log', refused)
  t.ok(refused(), 'the node logs why')
})

t.test('ssh_service.port_forwarding: off refuses ssh -R whatever the roles', async (t) => {
  const port = await freePort()
  const { exited } = remoteForward(forwarder, 'pi-off', port)
  t.not(await exited, 0)
  t.equal(await readFrom(port), 'ECONNREFUSED')
})

// ---- Agent forwarding ------------------------------------------------------------------------

const agentDir = tempDir('warren-agent-test-')
const agentSocket = join(agentDir, 'agent.sock')
const agent = spawn('ssh-agent', ['-D', '-a', agentSocket], { stdio: 'ignore' })
t.teardown(() => agent.kill())
const key = join(agentDir, 'id_ed25519')
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'forwarded', '-f', key])
const fingerprint = execFileSync('ssh-keygen', ['-l', '-f', `${key}.pub`], { encoding: 'utf8' }).split(' ')[1]
const sshAdd = () => new Promise<boolean>((resolve) => execFile('ssh-add', [key], { env: { ...process.env, SSH_AUTH_SOCK: agentSocket } }, (error) => resolve(!error)))
for (let tries = 0; !(await sshAdd()); tries++) {
  // ssh-agent makes its socket just after it starts.
  if (tries > 50) throw new Error('ssh-agent did not start')
  await sleep(100)
}

/** `ssh -A` running `command` on pi-fwd, with the test's agent. */
function withAgent(config: string, command: string) {
  return new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const ssh = spawn('ssh', ['-F', config, '-o', 'BatchMode=yes', '-A', `${login}@pi-fwd`, command], { env: { ...process.env, SSH_AUTH_SOCK: agentSocket } })
    let stdout = ''
    ssh.stdout.on('data', (chunk) => (stdout += chunk))
    ssh.on('exit', (code) => resolve({ code, stdout }))
  })
}

t.test('forward_agent: true gives the session the client’s agent: ssh-add -l lists its key', async (t) => {
  const listed = await withAgent(forwarder, 'ssh-add -l; echo "sock=$SSH_AUTH_SOCK"; stat -c "dir=%a %U" "$(dirname "$SSH_AUTH_SOCK")"')
  t.equal(listed.code, 0)
  t.match(listed.stdout, fingerprint, "the key's fingerprint")
  const socket = /^sock=(.+)$/m.exec(listed.stdout)?.[1]
  t.ok(socket, 'SSH_AUTH_SOCK is set')
  t.match(listed.stdout, new RegExp(`^dir=700 ${login}$`, 'm'), 'in a directory only the login may enter')
  // The node removes it when the session ends, which may be just after the client has exited.
  for (let tries = 0; tries < 100 && existsSync(socket!); tries++) await sleep(50)
  t.notOk(existsSync(socket!), 'removed at session end')
})

t.test('without it, SSH_AUTH_SOCK is unset on the node and ssh-add -l fails', async (t) => {
  const listed = await withAgent(plain, 'echo "sock=[$SSH_AUTH_SOCK]"; ssh-add -l; echo "status=$?"')
  t.match(listed.stdout, /^sock=\[\]$/m)
  t.notMatch(listed.stdout, fingerprint)
  t.match(listed.stdout, /^status=2$/m, 'ssh-add cannot reach an agent')
  const refused = () => logEntries(pi.stderr, { login }).some((entry) => /agent forwarding refused: the certificate lacks permit-agent-forwarding/.test(String(entry.msg)))
  await pi.waitFor('the refusal in the node log', refused)
  t.ok(refused(), 'the node logs why')
})

t.test('a client that vanishes without closing its channel leaves neither its agent socket nor its command on the node', async (t) => {
  // OpenSSH signals its ProxyCommand as it exits, which may be before the ProxyCommand has
  // passed on the channel's close; here the ProxyCommand is killed outright mid-session.
  const ssh = spawn('ssh', ['-F', forwarder, '-o', 'BatchMode=yes', '-A', `${login}@pi-fwd`, 'echo "sock=$SSH_AUTH_SOCK pid=$$"; exec sleep 300'], {
    env: { ...process.env, SSH_AUTH_SOCK: agentSocket },
  })
  t.teardown(() => ssh.kill())
  let stdout = ''
  ssh.stdout.on('data', (chunk) => (stdout += chunk))
  for (let tries = 0; tries < 200 && !/pid=\d+\n/.test(stdout); tries++) await sleep(50)
  const [, socket, pid] = /^sock=(\S+) pid=(\d+)$/m.exec(stdout) ?? []
  // The node is this machine: its files and processes are seen from here.
  const running = () => existsSync(`/proc/${pid}`)
  t.ok(socket && existsSync(socket), 'the session has its agent socket')
  t.ok(running(), 'the command runs')
  const proxyCommand = execFileSync('pgrep', ['-P', String(ssh.pid)], { encoding: 'utf8' })
    .trim()
    .split('\n')
  t.equal(proxyCommand.length, 1, 'ssh runs one ProxyCommand')
  process.kill(Number(proxyCommand[0]), 'SIGKILL')
  for (let tries = 0; tries < 100 && (existsSync(socket!) || running()); tries++) await sleep(50)
  t.notOk(existsSync(socket!), 'the agent socket is removed')
  t.notOk(running(), 'the command is ended')
})
