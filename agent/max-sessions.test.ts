// The role option max_sessions, carried in the user's certificate: how many session channels
// (shell, command, sftp) the user may hold at once on one SSH connection, as OpenSSH's
// ControlMaster multiplexes `ssh` commands over one. The node refuses what goes beyond, as
// administratively prohibited, and logs why; a session that ends frees its slot at once, and
// forwarded connections are not sessions.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync } from 'node:fs'
import { type AddressInfo, connect, createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { type Access, legacyAccess } from '../shared/access.ts'
import { sshAccessExtensions } from '../shared/access-cert.ts'
import { createLogger } from '../shared/log.ts'
import { sshLoginArgs, startTestSshServer, testSshUser } from '../test/helpers/node-ssh-server.ts'

const cannot = process.getuid?.() !== 0 ? 'runs sessions as root' : spawnSync('ssh', ['-V']).status !== 0 ? 'needs the OpenSSH client' : undefined
const dir = t.testdir()
const userCA = generateKeyPairSync('ed25519')
const hostKey = generateKeyPairSync('ed25519')
const user = testSshUser(dir, userCA.privateKey)

/** A key whose certificate (key ID `name`) carries `access`: every node, root, every port, and what is given. */
function identity(name: string, access: Partial<Access>): string {
  const home = join(dir, name)
  mkdirSync(home)
  const key = join(home, 'id_ed25519')
  copyFileSync(user.key, key)
  // What a certificate of the built-in role access allows, as root.
  const full: Access = { ...legacyAccess(['root']), ...access }
  user.certify(name, sshAccessExtensions(full), `${key}-cert.pub`)
  return key
}

/** The node's log entries, as JSON. */
const entries: Record<string, unknown>[] = []
const log = createLogger('node', {
  level: 'info',
  format: 'json',
  stream: { write: (line: string) => entries.push(JSON.parse(line)) } as unknown as NodeJS.WritableStream,
})
const { port } = await startTestSshServer(t, { hostKey: hostKey.privateKey, userCA: userCA.publicKey, home: dir, log, knownHosts: user.knownHosts })

/**
 * Where nothing listens: a client of a ControlMaster whose session the node refuses would
 * otherwise fall back to a connection of its own.
 */
const CLOSED_PORT = 1

function sshArgs(key: string, sshPort: number, ...more: string[]): string[] {
  return sshLoginArgs(user.knownHosts, key, sshPort, ...more)
}

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

/** An OpenSSH client, its output gathered. */
function spawnSsh(t: Test, args: string[]): { child: ChildProcess; result: Promise<Result>; stderr: () => string } {
  const child = spawn('ssh', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr!.on('data', (chunk) => {
    stderr += chunk
  })
  const result = new Promise<Result>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })))
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  return { child, result, stderr: () => stderr }
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

function running(pattern: string): boolean {
  return spawnSync('pgrep', ['-f', pattern]).status === 0
}

/** A ControlMaster connection of `key`, without a session of its own: `ssh -S` clients open theirs over it. */
async function master(t: Test, key: string, ...more: string[]): Promise<{ socket: string; stderr: () => string }> {
  const socket = join(dir, `ctl-${Math.random().toString(36).slice(2)}`)
  const { stderr } = spawnSsh(t, sshArgs(key, port, '-M', '-S', socket, '-N', ...more))
  await until('the master connection', () => existsSync(socket))
  return { socket, stderr }
}

/** A command over the master's connection. */
function overMaster(t: Test, key: string, socket: string, command: string) {
  return spawnSsh(t, [...sshArgs(key, CLOSED_PORT, '-S', socket), command])
}

function refusals(keyId: string): Record<string, unknown>[] {
  return entries.filter((entry) => entry.key_id === keyId && entry.max_sessions !== undefined)
}

t.test('max_sessions: 1 refuses a second session while the first runs, and allows it after', { skip: cannot }, async (t) => {
  const key = identity('one-session', { max_sessions: 1 })
  const { socket, stderr: masterStderr } = await master(t, key)
  const marker = `sleep 3.${port}1`
  const first = overMaster(t, key, socket, marker)
  await until('the first session to run', () => running(`^${marker}$`))

  const second = await overMaster(t, key, socket, 'echo second').result
  t.equal(second.code, 255, 'the second session is refused')
  t.equal(second.stdout, '', 'its command did not run')
  t.ok(running(`^${marker}$`), 'the first session still runs')
  const [refusal] = refusals('one-session')
  t.match(refusal, { level: 'info', login: 'root', key_id: 'one-session', max_sessions: 1, sessions: 1, reason: String }, 'the refusal is logged with the limit')
  t.equal(refusals('one-session').length, 1, 'once')
  t.match(masterStderr(), /administratively prohibited/, 'OpenSSH is told the channel is administratively prohibited')
  t.ok(masterStderr().includes(refusal.reason as string), 'with the reason')

  const firstDone = await first.result
  t.equal(firstDone.code, 0, 'the first session ends well')
  // No wait: the ended session freed its slot.
  const third = await overMaster(t, key, socket, 'echo second').result
  t.equal(third.code, 0, 'a session after the first ended is allowed')
  t.equal(third.stdout, 'second\n')
  t.equal(refusals('one-session').length, 1, 'and not refused')
})

t.test('max_sessions: 2 allows two sessions at once, not three', { skip: cannot }, async (t) => {
  const key = identity('two-sessions', { max_sessions: 2 })
  const { socket } = await master(t, key)
  const marker = `sleep 3.${port}2`
  const held = [overMaster(t, key, socket, marker), overMaster(t, key, socket, marker)]
  await until('two sessions to run', () => spawnSync('pgrep', ['-c', '-f', `^${marker}$`], { encoding: 'utf8' }).stdout.trim() === '2')
  const third = await overMaster(t, key, socket, 'echo third').result
  t.equal(third.code, 255, 'the third is refused')
  t.equal(third.stdout, '')
  t.match(refusals('two-sessions'), [{ key_id: 'two-sessions', max_sessions: 2, sessions: 2 }])
  for (const session of held) t.equal((await session.result).code, 0)
})

t.test('forwarded connections are not sessions: they pass while the one session runs', { skip: cannot }, async (t) => {
  const echo = createServer((socket) => socket.pipe(socket))
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
  t.teardown(() => echo.close())
  const local = join(dir, `forward-${Math.random().toString(36).slice(2)}`)
  const key = identity('forwarding', { max_sessions: 1 })
  const { socket } = await master(t, key, '-L', `${local}:127.0.0.1:${(echo.address() as AddressInfo).port}`)
  const marker = `sleep 3.${port}3`
  const session = overMaster(t, key, socket, marker)
  await until('the session to run', () => running(`^${marker}$`))
  for (let i = 0; i < 3; i++) {
    const answer = await new Promise<string>((resolve, reject) => {
      const conn = connect(local)
      let data = ''
      conn.on('data', (chunk) => {
        data += chunk
        if (data === `ping ${i}`) conn.end()
      })
      conn.on('error', reject)
      conn.on('close', () => resolve(data))
      conn.write(`ping ${i}`)
    })
    t.equal(answer, `ping ${i}`, `forwarded connection ${i + 1} passes`)
  }
  t.equal(refusals('forwarding').length, 0, 'nothing refused')
  t.equal((await session.result).code, 0)
})

t.test('without max_sessions, sessions on one connection run at once', { skip: cannot }, async (t) => {
  const key = identity('no-limit', {})
  const { socket } = await master(t, key)
  const marker = `sleep 3.${port}4`
  const first = overMaster(t, key, socket, marker)
  await until('the first session to run', () => running(`^${marker}$`))
  const second = await overMaster(t, key, socket, 'echo second').result
  t.equal(second.code, 0, 'the second session runs')
  t.equal(second.stdout, 'second\n')
  t.ok(running(`^${marker}$`), 'while the first still runs')
  t.equal((await first.result).code, 0)
  t.equal(refusals('no-limit').length, 0)
})
