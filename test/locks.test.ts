// Locks against real processes: a user lock closes the user's live OpenSSH session and its
// -L forward in the middle of a transfer, refuses new ones with the lock's message (on the
// standard error of warren ssh and of OpenSSH's ProxyCommand), and leaves the backend with
// the lock and nothing else changed; lock rm ends it. A node lock with a short TTL refuses
// the node (tunnel, renewal) until it expires, and the node's agent gets back in by itself.
// Bad input changes nothing.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { SqliteBackend } from '../auth/backend/sqlite.ts'
import { ApiClient } from '../shared/api-client.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import {
  AuthProcess,
  type Daemon,
  freePort,
  JSON_LOGS,
  logEntries,
  openssh,
  ProxyProcess,
  signUser,
  startNode,
  tempDir,
  testLogin,
  waitForNode,
  warren,
} from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

t.setTimeout(300_000)

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_LOGS }).start()
t.teardown(() => proxy.stop())

const echo: Server = createServer((socket) => {
  socket.on('error', () => {}) // the forward is cut mid-transfer: its resets are expected
  socket.pipe(socket)
})
await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
t.teardown(() => echo.close())
const echoPort = (echo.address() as { port: number }).port

const dataDir = tempDir()
const config = join(dataDir, 'warren.yaml')
writeFileSync(config, `version: v1\ndata_dir: ${dataDir}\nssh_service:\n  forward_ports: [{ name: webui, addr: "127.0.0.1:${echoPort}" }]\n`)
const node: Daemon = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-lock'])
t.teardown(() => node.stop())
await waitForNode(auth, 'pi-lock')
const hostId = loadIdentity(dataDir)!.hostId
const profile = await signUser(auth, proxy.web)
const login = testLogin()

/** The backend's items under `prefix`, read from the auth server's SQLite file while it runs. */
async function stored(prefix: string): Promise<{ key: string; value: Record<string, unknown> }[]> {
  const backend = SqliteBackend.open(join(auth.dataDir, 'backend.db'))
  try {
    return (await backend.list(prefix)).map((item) => ({ key: item.key, value: JSON.parse(item.value) }))
  } finally {
    await backend.close()
  }
}

/** Connects to a local port once something listens there. */
async function connectWhenOpen(port: number): Promise<Socket> {
  for (let attempt = 0; attempt < 150; attempt++) {
    const socket = await new Promise<Socket | undefined>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => resolve(s))
      s.once('error', () => resolve(undefined))
    })
    if (socket) return socket
    await sleep(100)
  }
  throw new Error(`nothing listened on 127.0.0.1:${port}`)
}

const webui = async (target = 'pi-lock') => {
  const result = await warren(['proxy', 'port', `--identity=${profile}`, target, 'webui'], { input: 'hi' })
  return result.code === 0 ? result.stdout : `failed: ${result.stderr.trim()}`
}

t.test('a user lock closes a live OpenSSH session and its -L forward mid-transfer, and refuses new ones with its message', async (t) => {
  const local = await freePort()
  const ssh = spawn(
    'ssh',
    ['-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', '-o', 'ExitOnForwardFailure=yes', '-L', `${local}:127.0.0.1:${echoPort}`, `${login}@pi-lock`, 'sleep 300'],
    { stdio: 'ignore' },
  )
  const sshExit = once(ssh, 'exit')
  t.teardown(() => ssh.kill('SIGKILL'))
  const forward = await connectWhenOpen(local)
  forward.on('error', () => {})
  let echoed = 0
  forward.on('data', (chunk: Buffer) => (echoed += chunk.length))
  // (events.once would reject on the reset that ends it.)
  const forwardClosed = new Promise((resolve) => forward.once('close', resolve))
  const feed = setInterval(() => forward.writable && forward.write(Buffer.alloc(64 * 1024, 'x')), 5)
  t.teardown(() => clearInterval(feed))
  await until('bytes to flow through the forward', () => echoed > 1024 * 1024, { timeoutMs: 30_000 })
  const usersBefore = await stored('/users/')
  const nodesBefore = await stored('/nodes/')

  const locked = await auth.ctl(['lock', '--user=alice', '--message=maintenance window'])
  t.equal(locked.code, 0, locked.stderr)
  const id = /^Created a lock with ID "([0-9a-f-]{36})" on user:alice$/m.exec(locked.stdout)?.[1]
  t.ok(id, `the lock's ID: ${locked.stdout}`)

  const [code] = await sshExit
  t.equal(code, 255, 'the OpenSSH session ended: the proxy closed its connection')
  await forwardClosed
  clearInterval(feed)
  t.pass('the forward closed in the middle of the transfer')
  t.ok(logEntries(proxy.daemon.stderr, { user: 'alice', locked: true }).length > 0, 'by the proxy, for the lock')

  const again = await warren(['ssh', `--identity=${profile}`, `${login}@pi-lock`, 'echo', 'hi'])
  t.not(again.code, 0, 'a new session is refused')
  t.match(again.stderr, 'user "alice" is locked: maintenance window', 'warren ssh shows the message')
  const stock = await openssh(profile, [`${login}@pi-lock`, 'echo', 'hi'])
  t.equal(stock.code, 255)
  t.match(stock.stderr, 'user "alice" is locked: maintenance window', 'so does OpenSSH, from its ProxyCommand')
  const sign = await auth.ctl(['auth', 'sign', '--user=alice', `--out=${tempDir()}`])
  t.equal(sign.code, 1)
  t.match(sign.stderr, 'user "alice" is locked: maintenance window', 'a locked user gets no certificates')

  const locks = await stored('/locks/')
  t.equal(locks.length, 1, 'the backend holds the one lock')
  t.match(locks[0].value, { id, target: { user: 'alice' }, message: 'maintenance window' })
  t.notOk('expires' in locks[0].value, 'without --ttl it does not expire')
  t.same(await stored('/users/'), usersBefore, 'the user records are untouched')
  t.same(await stored('/nodes/'), nodesBefore, 'the node records too')

  const listing = await auth.ctl(['lock', 'ls'])
  t.match(listing.stdout, /^ID\s+Target\s+Message\s+Expires$/m)
  t.match(listing.stdout, new RegExp(`^${id}\\s+user:alice\\s+maintenance window\\s+never$`, 'm'))

  const removed = await auth.ctl(['lock', 'rm', id!])
  t.equal(removed.code, 0, removed.stderr)
  t.equal(removed.stdout, `Lock ${id} on user:alice has been removed\n`)
  t.equal((await auth.ctl(['lock', 'ls'])).stdout, 'No active locks found.\n')
  // Proxies learn of the removal at their next read of the live set (about a second).
  let back = { stdout: '', stderr: '' }
  await until('the proxy to let the user in again', async () => (back = await warren(['ssh', `--identity=${profile}`, `${login}@pi-lock`, 'echo', 'back'])).stdout === 'back\n', {
    timeoutMs: 10_000,
    everyMs: 250,
  })
  t.equal(back.stdout, 'back\n', `the user is let in again (${back.stderr.trim()})`)
  t.same(await stored('/locks/'), [], 'and the lock is gone from the backend')
})

t.test('a node lock refuses the node until it expires; then the node is back by itself', async (t) => {
  t.equal(await webui(), 'hi')
  const pid = node.child.pid
  const identity = loadIdentity(dataDir)!
  const locked = await auth.ctl(['lock', '--node=pi-lock', '--ttl=20s', '--message=firmware update'])
  t.equal(locked.code, 0, locked.stderr)
  t.match(locked.stdout, `on node:pi-lock (${hostId}), until`)

  await until('the proxy to close the tunnel', () => logEntries(proxy.daemon.stderr, { host_id: hostId, refused: true }).length > 0, { timeoutMs: 10_000 })
  const [closed] = logEntries(proxy.daemon.stderr, { host_id: hostId, refused: true })
  t.match(closed.msg, 'node "pi-lock" is locked: firmware update')
  t.match(await webui(), /^failed: .*not connected to this proxy/, 'users do not reach it')
  const client = new ApiClient({ server: auth.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
  t.teardown(() => client.close())
  await t.rejects(client.request('POST', '/v1/renew', {}), { status: 401, message: /node "pi-lock" is locked: firmware update/ }, 'it cannot renew')
  t.match((await auth.ctl(['nodes', 'ls', '--all'])).stdout, new RegExp(`^pi-lock\\s+${hostId}\\s+⟵ Tunnel\\s+locked\\s`, 'm'), 'nodes ls --all shows it locked')

  await until('the node to be back', async () => (await webui()) === 'hi', { timeoutMs: 90_000, everyMs: 1000 })
  t.equal(node.child.pid, pid, 'the same agent process, nobody restarted it')
  t.ok(node.running)
  t.equal((await auth.ctl(['lock', 'ls'])).stdout, 'No active locks found.\n', 'the lock expired')
})

t.test('bad lock requests are refused and change nothing', async (t) => {
  const before = await stored('/locks/')
  const cases: [string[], number, string][] = [
    [['lock'], 2, 'a lock needs exactly one target: --user=NAME or --node=NODE'],
    [['lock', '--user=alice', '--node=pi-lock'], 2, 'a lock needs exactly one target'],
    [['lock', '--user=alice', '--ttl=5x'], 2, 'invalid duration "5x" for --ttl'],
    [['lock', '--user=nobody'], 1, 'no user "nobody"'],
    [['lock', '--node=no-such-node'], 1, 'no node "no-such-node" is registered'],
    [['lock', 'rm', '00000000-0000-0000-0000-000000000000'], 1, 'no lock "00000000-0000-0000-0000-000000000000"'],
    [['lock', 'rm'], 2, 'needs an ID argument'],
  ]
  for (const [args, code, message] of cases) {
    const result = await auth.ctl(args)
    t.equal(result.code, code, args.join(' '))
    t.match(result.stderr, message)
  }
  const badMessage = await auth.api('POST', '/v1/locks', { user: 'alice', message: 'two\nlines' }).then(
    () => undefined,
    (error: Error) => error,
  )
  t.match(badMessage, { status: 400, message: 'field "message" must be one line of printable text' })
  t.same(await stored('/locks/'), before, 'no lock was written')
})
