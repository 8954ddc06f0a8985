// One user with a valid certificate, attacking the node's SSH server as OpenSSH's client can:
// many sessions on one connection (ControlMaster), many forwards on one connection, many
// connections at once; and connections that never log in. Each is bounded: what goes beyond
// is refused, and what the node holds is counted (processes, sockets, connections).

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { existsSync } from 'node:fs'
import { type AddressInfo, connect, createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { duplexPair } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { createLogger } from '../shared/log.ts'
import { startTestSshServer, testSshUser } from '../test/helpers/node-ssh-server.ts'
import { defaultSshLimits, type NodeSshServer, type SshLimits } from './ssh-server.ts'

const cannot = process.getuid?.() !== 0 ? 'runs sessions as root' : spawnSync('ssh', ['-V']).status !== 0 ? 'needs the OpenSSH client' : undefined
const dir = t.testdir()
const userCA = generateKeyPairSync('ed25519')
const hostKey = generateKeyPairSync('ed25519')
const user = testSshUser(dir, userCA.privateKey)
user.certify('mallory', { 'permit-pty': '', 'permit-port-forwarding': '' })
const log = createLogger('node', { level: 'error' })

function sshServer(t: Test, limits: Partial<SshLimits> = {}): Promise<{ server: NodeSshServer; port: number }> {
  return startTestSshServer(t, { hostKey: hostKey.privateKey, userCA: userCA.publicKey, home: dir, log, knownHosts: user.knownHosts, limits })
}

/** OpenSSH clients, each with its exit status once it has one. */
function clients(t: Test, count: number, args: (i: number) => string[]): { exited: () => number; children: ChildProcess[] } {
  let exited = 0
  const children = Array.from({ length: count }, (_, i) => {
    const child = spawn('ssh', args(i), { stdio: 'ignore' })
    child.once('exit', () => exited++)
    return child
  })
  t.teardown(() => {
    for (const child of children) child.kill('SIGKILL')
  })
  return { exited: () => exited, children }
}

function processes(pattern: string): number {
  const out = spawnSync('pgrep', ['-f', '-c', pattern], { encoding: 'utf8' }).stdout
  return Number(out.trim() || 0)
}

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

/**
 * Where nothing listens: a client of a ControlMaster whose session the node refuses would
 * otherwise fall back to a connection of its own.
 */
const CLOSED_PORT = 1

/** A ControlMaster connection: further `ssh -S` clients open their sessions over it. */
async function master(t: Test, port: number, ...more: string[]): Promise<string> {
  const socket = join(dir, `ctl-${port}-${Math.random().toString(36).slice(2)}`)
  const child = spawn('ssh', [...user.sshArgs(port, '-M', '-S', socket, '-N', ...more)], { stdio: 'ignore' })
  t.teardown(() => child.kill('SIGKILL'))
  await until('the master connection', () => existsSync(socket))
  return socket
}

t.test('sessions on one connection are bounded: the rest are refused and start no process', { skip: cannot }, async (t) => {
  const { port } = await sshServer(t)
  const control = await master(t, port)
  const marker = `sleep 4${port}`
  const asked = 40
  const { exited } = clients(t, asked, () => [...user.sshArgs(CLOSED_PORT, '-S', control), marker])
  const limit = defaultSshLimits.maxSessionsPerConnection
  await until('every session to start or be refused', () => processes(`^${marker}$`) + exited() === asked)
  t.equal(processes(`^${marker}$`), limit, `${limit} of ${asked} sessions run`)
  t.equal(exited(), asked - limit, 'the others were refused')
})

t.test('forwards on one connection are bounded: the rest are refused and open no socket', { skip: cannot }, async (t) => {
  const { port } = await sshServer(t)
  const held: Socket[] = []
  const destination = createServer((socket) => held.push(socket))
  await new Promise<void>((resolve) => destination.listen(0, '127.0.0.1', resolve))
  const local = createServer()
  await new Promise<void>((resolve) => local.listen(0, '127.0.0.1', resolve))
  const localPort = (local.address() as AddressInfo).port
  local.close()
  t.teardown(() => {
    for (const socket of held) socket.destroy()
    destination.close()
  })
  await master(t, port, '-L', `${localPort}:127.0.0.1:${(destination.address() as AddressInfo).port}`)
  const asked = 150
  let closed = 0
  const sockets = Array.from({ length: asked }, () => {
    const socket = connect(localPort, '127.0.0.1')
    socket.on('error', () => {})
    socket.once('close', () => closed++)
    return socket
  })
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
  })
  const limit = defaultSshLimits.maxForwardsPerConnection
  await until('every forward to open or be refused', () => held.length + closed === asked)
  t.equal(held.length, limit, `${limit} of ${asked} forwards reach the destination`)
  t.equal(closed, asked - limit, 'the others were refused')
})

t.test("one user's connections are bounded: logins beyond are refused", { skip: cannot }, async (t) => {
  const { server, port } = await sshServer(t)
  const marker = `sleep 5${port}`
  const asked = 24
  const { exited } = clients(t, asked, () => [...user.sshArgs(port), marker])
  const limit = defaultSshLimits.maxConnectionsPerUser
  await until('every login to run or be refused', () => processes(`^${marker}$`) + exited() === asked, 30_000)
  t.equal(processes(`^${marker}$`), limit, `${limit} of ${asked} connections run their command`)
  t.equal(exited(), asked - limit, 'the others were refused')
  // A refused client can exit before the server has read its connection's close.
  await until('the server to drop the refused connections', () => server.activeSessions <= limit, 10_000)
  t.equal(server.activeSessions, limit, 'and only those are held')
})

/** Raw TCP connections to `port` that never say a word, and how many the server closed. */
function silent(t: Test, port: number, count: number): () => number {
  let closed = 0
  const sockets = Array.from({ length: count }, () => {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    socket.once('close', () => closed++)
    // Read what the node says (its version line), so that its close is seen; answer nothing.
    socket.resume()
    return socket
  })
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
  })
  return () => closed
}

t.test('connections that never log in are bounded in number', { skip: cannot }, async (t) => {
  const { server, port } = await sshServer(t)
  const asked = 100
  const closed = silent(t, port, asked)
  const limit = defaultSshLimits.maxUnauthenticated
  await until('the connections beyond the limit to be closed', () => closed() === asked - limit)
  t.equal(server.activeSessions, limit, `the node holds ${limit} of ${asked} connections that do not log in`)
})

t.test('connections that never log in are closed after the login grace time', { skip: cannot }, async (t) => {
  const { server, port } = await sshServer(t, { loginGraceMs: 500 })
  const closed = silent(t, port, 5)
  await until('the grace time to close them', () => closed() === 5)
  t.equal(server.activeSessions, 0, 'the node holds none of them')
})

t.test('users holding one login each keep it when the slots run out; a user holding more gives one way', { skip: cannot }, async (t) => {
  /** Silent streams judged for their users on `server`, and whether the node closed each. */
  const logins = (server: NodeSshServer) => (user: string) => {
    const [ours, theirs] = duplexPair()
    let closed = false
    ours.on('error', () => {})
    theirs.on('error', () => {})
    // The node's side: what the node closes (a pair's other side is not closed with it).
    theirs.once('close', () => (closed = true))
    ours.resume()
    server.handleConnection(theirs, { user, remoteAddress: `${user}:1` })
    t.teardown(() => ours.destroy())
    return () => closed
  }
  const few = logins((await sshServer(t, { maxUnauthenticated: 4 })).server)
  const held = ['victim', 'a', 'b', 'c'].map(few)
  const newcomer = few('d')
  await until("the newcomer's connection to be refused", () => newcomer())
  t.ok(
    held.every((closed) => !closed()),
    "no user's one login is closed for another's (many accounts cannot close a victim's)",
  )

  const many = logins((await sshServer(t, { maxUnauthenticated: 4 })).server)
  const hog = ['hog', 'hog', 'hog', 'hog'].map(many)
  const other = many('other')
  await until("one of the hog's to be closed", () => hog.some((closed) => closed()))
  t.equal(hog.filter((closed) => closed()).length, 1, 'one, the oldest')
  t.notOk(other(), 'for the other user, who gets in')
})
