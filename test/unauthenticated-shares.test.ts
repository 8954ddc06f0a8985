// A node takes only so many SSH connections that have not logged in (ssh_service.limits
// max_unauthenticated), each held up to the login grace time. One user holding all of them,
// silent, through the proxy, must not keep every other user out: the slots are shared by
// the user the proxy judged for each stream. Real processes: an auth server, a proxy, a
// node, stock OpenSSH for the other user.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { defaultSshLimits } from '../agent/ssh-server.ts'
import { dialThroughProxy } from '../cli/ssh.ts'
import { AuthProcess, JSON_LOGS, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
t.teardown(() => proxy.stop())
const nodeDir = tempDir()
writeFileSync(join(nodeDir, 'warren.yaml'), `version: v1\ndata_dir: ${nodeDir}\n${JSON_LOGS}`)
const node = startNode([`--config=${join(nodeDir, 'warren.yaml')}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=shared-1'])
t.teardown(() => node.stop())
await waitForNode(auth, 'shared-1')
const mallory = await signUser(auth, proxy.web, 'mallory', 'access')
const victim = await signUser(auth, proxy.web, 'victim', 'access')

/** An SSH stream through the proxy that never says a word; what the node sent on it, and whether it is still open. */
interface Silent {
  received: () => string
  open: () => boolean
}

async function silentSsh(t: Test): Promise<Silent> {
  const socket = await dialThroughProxy({ identity: mallory }, 'shared-1', { service: 'ssh' })
  t.teardown(() => socket.destroy())
  let received = ''
  let open = true
  socket.on('error', () => {})
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')))
  socket.once('close', () => (open = false))
  return { received: () => received, open: () => open }
}

t.test("one user's silent connections take the slots it may hold, not another user's", async (t) => {
  const limit = defaultSshLimits.maxUnauthenticated
  const held: Silent[] = []
  for (let i = 0; i < limit; i++) {
    const connection = await silentSsh(t)
    // The node greets each connection it took: that one holds a slot now.
    await until('the node to greet the connection', () => connection.received().startsWith('SSH-2.0-') || !connection.open())
    held.push(connection)
  }
  t.equal(held.filter((c) => c.open()).length, limit, `the user holds all ${limit} slots`)

  // The node may reset the stream before its reply to the proxy is out: refused either way.
  const beyond = await silentSsh(t).catch((): Silent => ({ received: () => '', open: () => false }))
  await until('the connection beyond to be closed', () => !beyond.open(), { timeoutMs: 20_000 })
  t.equal(beyond.received(), '', 'the attacker gets no more: closed before any greeting')
  t.equal(held.filter((c) => c.open()).length, limit, 'and keeps what it held')
  // The client can see its connection closed before the node's log line has reached this process.
  const refusals = () => node.logEntries().filter((entry) => entry.user === 'mallory' && entry.unauthenticated === limit)
  await until('the node to log the refusal', () => refusals().length > 0).catch(() => {})
  t.equal(refusals().length, 1, 'the node logs the refusal, naming the user')

  const other = await openssh(victim, [`${testLogin()}@shared-1`, 'echo in'])
  t.equal(other.code, 0, other.stderr)
  t.equal(other.stdout, 'in\n', 'another user still logs in')
  await until('one slot of the attacker to be given up', () => held.filter((c) => c.open()).length === limit - 1, { timeoutMs: 20_000 })
  t.equal(held.filter((c) => c.open()).length, limit - 1, 'the attacker gave up one slot to it')
  const given = () => node.logEntries().filter((entry) => entry.user === 'mallory' && String(entry.for_remote).startsWith('victim@'))
  await until('the node to log the slot given up', () => given().length > 0).catch(() => {})
  t.equal(given().length, 1, 'the node logs whose slot went to whom')
})
