// A node's tunnel to a proxy carries only so many streams at once (maxIncomingStreams, the
// node resets those beyond). One user's idle forwarded-port connections must not fill it
// and keep everyone else from the node: the proxy gives each user a share of a node's
// streams, and refuses the user's connections beyond it; and a role's max_connections
// counts forwarded-port connections as it counts SSH ones. Real processes: an auth server,
// a proxy, a node with a declared port, stock OpenSSH.

import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { dialThroughProxy } from '../cli/ssh.ts'
import { MAX_STREAMS_PER_USER_PER_NODE } from '../proxy/node-dialer.ts'
import { defaultConfig } from '../shared/yamux/index.ts'
import { AuthProcess, JSON_LOGS, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_LOGS }).start()
t.teardown(() => proxy.stop())

/** The declared port: an echo server, holding every connection it accepted. */
const accepted: Socket[] = []
const echo = createServer((socket) => {
  accepted.push(socket)
  socket.on('error', () => {})
  socket.pipe(socket)
})
echo.listen(0, '127.0.0.1')
await once(echo, 'listening')
t.teardown(() => {
  for (const socket of accepted) socket.destroy()
  echo.close()
})
const echoPort = (echo.address() as { port: number }).port
const open = () => accepted.filter((socket) => !socket.destroyed).length

const nodeDir = tempDir()
const config = join(nodeDir, 'warren.yaml')
writeFileSync(config, ['version: v1', `data_dir: ${nodeDir}`, 'ssh_service:', `  forward_ports: [{ name: echo, addr: "127.0.0.1:${echoPort}" }]`, JSON_LOGS].join('\n'))
const node = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=busy-1'])
t.teardown(() => node.stop())
await waitForNode(auth, 'busy-1')
const mallory = await signUser(auth, proxy.web, 'mallory', 'access')
const victim = await signUser(auth, proxy.web, 'victim', 'access')

/** A forwarded-port connection of the user in `profile` to busy-1's echo, closed at the end of `t`; or why it was refused. */
async function portConnection(t: Test, profile: string): Promise<{ socket: Awaited<ReturnType<typeof dialThroughProxy>> } | { refused: string }> {
  try {
    const socket = await dialThroughProxy({ identity: profile }, 'busy-1', { service: 'port', name: 'echo' })
    socket.on('error', () => {})
    t.teardown(() => socket.destroy())
    return { socket }
  } catch (error) {
    return { refused: (error as Error).message }
  }
}

/** Whether a connection carries bytes there and back. */
async function echoes(socket: Socket): Promise<boolean> {
  socket.write('ping')
  const [chunk] = (await once(socket, 'data')) as [Buffer]
  return chunk.toString() === 'ping'
}

const refusals = (user: string) => proxy.daemon.logEntries().filter((entry) => entry.user === user && entry.access_denied === true).length

t.test("one user's idle forwards take its share of the node's tunnel, not the whole of it", async (t) => {
  t.ok(MAX_STREAMS_PER_USER_PER_NODE < defaultConfig.maxIncomingStreams, "a user's share is less than a tunnel carries")
  // The attack: as many idle connections as the tunnel carries, eight being opened at a time.
  const attempts = defaultConfig.maxIncomingStreams
  const held: Socket[] = []
  let refused = 0
  let tried = 0
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (tried < attempts) {
        tried++
        const connection = await portConnection(t, mallory)
        if ('socket' in connection) held.push(connection.socket)
        else refused++
      }
    }),
  )
  t.equal(held.length, MAX_STREAMS_PER_USER_PER_NODE, `the attacker holds ${MAX_STREAMS_PER_USER_PER_NODE} connections`)
  t.equal(refused, attempts - MAX_STREAMS_PER_USER_PER_NODE, 'the rest are refused')
  t.equal(refusals('mallory'), refused, 'and the proxy logs each refusal, naming the user')
  await until('the port to hold every connection let through', () => open() === held.length, { timeoutMs: 20_000 })
  t.equal(open(), MAX_STREAMS_PER_USER_PER_NODE, 'the port holds only those')

  const other = await portConnection(t, victim)
  t.ok('socket' in other && (await echoes(other.socket)), "another user's forward still reaches the port")
  const ssh = await openssh(victim, [`${testLogin()}@busy-1`, 'echo in'])
  t.equal(ssh.code, 0, ssh.stderr)
  t.equal(ssh.stdout, 'in\n', 'and its SSH the node')
  t.equal(refusals('victim'), 0)

  // What the attacker gives back is its own again.
  held.pop()?.destroy()
  let again: Awaited<ReturnType<typeof portConnection>> | undefined
  await until('the closed connection to be given back', async () => 'socket' in (again = await portConnection(t, mallory)), { timeoutMs: 20_000 })
  t.ok(again && 'socket' in again && (await echoes(again.socket)), 'a connection closed makes room for another of the same user')
})

const ONE_AT_A_TIME = `kind: role
version: v1
metadata:
  name: one-at-a-time
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: { '*': '*' }
    ports: ['*']
  options:
    max_connections: 1
`

t.test("a role's max_connections counts forwarded-port connections as it counts SSH ones", async (t) => {
  await auth.create(ONE_AT_A_TIME)
  const limited = await signUser(auth, proxy.web, 'lim', 'one-at-a-time')

  const first = await portConnection(t, limited)
  t.ok('socket' in first && (await echoes(first.socket)), 'the first connection reaches the port')
  const second = await portConnection(t, limited)
  t.ok('refused' in second, 'a second forwarded-port connection is refused')
  const ssh = await openssh(limited, [`${testLogin()}@busy-1`, 'echo in'])
  t.equal(ssh.code, 255, 'so is an SSH connection')
  t.equal(ssh.stdout, '')
  t.equal(refusals('lim'), 2, 'the proxy logs both refusals, naming the user')

  const other = await portConnection(t, victim)
  t.ok('socket' in other && (await echoes(other.socket)), "another user's forward still reaches the port")

  if ('socket' in first) first.socket.destroy()
  let again: Awaited<ReturnType<typeof portConnection>> | undefined
  await until('the first connection to be released', async () => 'socket' in (again = await portConnection(t, limited)), { timeoutMs: 20_000 })
  t.ok(again && 'socket' in again && (await echoes(again.socket)), 'once it closed, the user connects again')
})
