// `warren proxy port --listen`: a local listener in front of a node's forwarded port, as
// `ssh -L` has. Real auth server, proxy and node; the listener is the real CLI, reached with
// plain TCP connections: several at once, one after another that the service closed, one to
// a port the user's roles deny (refused, the listener stays up), and SIGTERM closing it all.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { AuthProcess, JSON_LOGS, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'

const LAB_ROLE = `kind: role
version: v1
metadata:
  name: lab
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels:
      env: lab
    ports: ['*']
  deny:
    ports: [db]
`

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_LOGS }).start()
t.teardown(() => proxy.stop())

/** An echo service that counts its connections and closes one that sends "bye". */
async function echoService(): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0
  const server = createServer((socket) => {
    accepted++
    socket.on('data', (chunk) => (chunk.toString() === 'bye' ? socket.end() : socket.write(chunk)))
    socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return { port: (server.address() as { port: number }).port, accepted: () => accepted }
}
const webui = await echoService()
const db = await echoService()

const nodeDir = tempDir()
const config = join(nodeDir, 'warren.yaml')
const ports = `[{ name: webui, addr: "127.0.0.1:${webui.port}" }, { name: db, addr: "127.0.0.1:${db.port}" }]`
writeFileSync(config, ['version: v1', `data_dir: ${nodeDir}`, 'labels: { env: lab }', 'ssh_service:', `  forward_ports: ${ports}`, JSON_LOGS].join('\n'))
const node = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=lab-1'])
t.teardown(() => node.stop())
await waitForNode(auth, 'lab-1')

const role = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], { input: LAB_ROLE })
if (role.code !== 0) throw new Error(`create role: ${role.stderr}`)
const added = await auth.ctl(['users', 'add', 'alice', `--logins=${testLogin()}`, '--roles=lab'])
if (added.code !== 0) throw new Error(`users add: ${added.stderr}`)
const alice = tempDir('warren-user-')
const signed = await auth.ctl(['auth', 'sign', '--user=alice', '--ttl=1h', `--out=${alice}`, `--proxy=${proxy.web}`])
if (signed.code !== 0) throw new Error(`auth sign: ${signed.stderr}`)

interface Listener {
  child: ChildProcess
  port: number
  stderr: () => string
  exited: Promise<number | null>
}

/** `warren proxy port --listen=0 NODE NAME` as alice, once it printed its address. */
async function listen(nodeName: string, portName: string): Promise<Listener> {
  const child = spawn(process.execPath, [join(ROOT, 'cli/warren.ts'), 'proxy', 'port', '--listen=0', `--identity=${alice}`, nodeName, portName], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => child.kill('SIGKILL'))
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  // 'close': the exit status, and all it wrote to standard error read.
  const exited = once(child, 'close').then(([code]) => code as number | null)
  const first = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      stdout += chunk
      if (stdout.includes('\n')) resolve(stdout.slice(0, stdout.indexOf('\n')))
    })
    exited.then((code) => reject(new Error(`the listener ended (${code}): ${stderr}`)))
  })
  const address = /^listening on 127\.0\.0\.1:(\d+)$/.exec(first)
  if (!address) throw new Error(`unexpected first line: ${first}`)
  return { child, port: Number(address[1]), stderr: () => stderr, exited }
}

/** Sends `data` (then "bye" when `bye`, else the end) and returns all that came back until the connection closed. */
async function exchange(port: number, data: string, bye = false): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  let received = ''
  // A refused connection is closed with the data it sent unread: a reset.
  socket.on('error', () => {})
  socket.setEncoding('utf8')
  socket.on('data', (chunk) => {
    received += chunk
    if (bye && received === data) socket.write('bye')
  })
  socket.write(data)
  if (!bye) socket.end()
  await new Promise((resolve) => socket.on('close', resolve))
  return received
}

t.test('each connection gets its own stream; a closed one leaves the listener up', async (t) => {
  const listener = await listen('lab-1', 'webui')
  const payloads = ['first '.repeat(20_000), 'second '.repeat(30_000), 'third '.repeat(10_000)]
  const before = webui.accepted()
  const answers = await Promise.all(payloads.map((data) => exchange(listener.port, data)))
  t.same(answers, payloads, 'three concurrent connections each echo their own data')
  t.equal(webui.accepted(), before + 3, 'one connection to the service each')

  t.equal(await exchange(listener.port, 'closed by the service', true), 'closed by the service', 'the service closed this connection')
  t.equal(await exchange(listener.port, 'after it'), 'after it', 'the next connection works')

  listener.child.kill('SIGTERM')
  t.equal(await listener.exited, 0, 'SIGTERM ends it with status 0')
  const refused = connect(listener.port, '127.0.0.1')
  const [error] = (await once(refused, 'error').catch((e) => [e])) as [NodeJS.ErrnoException]
  t.equal(error.code, 'ECONNREFUSED', 'the port is closed')
})

t.test('SIGTERM closes the connections that are open', async (t) => {
  const listener = await listen('lab-1', 'webui')
  const socket = connect(listener.port, '127.0.0.1')
  socket.on('error', () => {})
  socket.write('ping')
  await once(socket, 'data')
  const closed = once(socket, 'close')
  listener.child.kill('SIGTERM')
  t.equal(await listener.exited, 0)
  await closed
  t.pass('the open connection was closed')
})

t.test("a port the user's roles deny is refused per connection; the listener stays up", async (t) => {
  const listener = await listen('lab-1', 'db')
  const before = db.accepted()
  t.equal(await exchange(listener.port, 'hello db'), '', 'nothing comes back')
  t.equal(await exchange(listener.port, 'hello again'), '', 'the listener still answers, and still refuses')
  t.equal(listener.child.exitCode, null, 'the listener is still running')
  t.equal(db.accepted(), before, 'nothing connected to the db port')
  listener.child.kill('SIGTERM')
  t.equal(await listener.exited, 0)
  const refusals = listener.stderr().trimEnd().split('\n')
  t.equal(refusals.length, 2, 'one line per refused connection')
  for (const line of refusals) {
    t.match(line, /^connection from 127\.0\.0\.1:\d+ closed: cannot reach node "lab-1": access to port "db" of node "lab-1" denied: the user's roles deny the port "db"$/)
  }
})

t.test('an unknown node fails before listening; so does a port in use', async (t) => {
  const unknown = await warren(['proxy', 'port', '--listen=0', `--identity=${alice}`, 'no-such-node', 'webui'])
  t.equal(unknown.code, 1)
  t.equal(unknown.stdout, '', 'nothing listened')
  t.match(unknown.stderr, /^ERROR: cannot reach node "no-such-node": /)

  const inUse = await warren(['proxy', 'port', `--listen=127.0.0.1:${webui.port}`, `--identity=${alice}`, 'lab-1', 'webui'])
  t.equal(inUse.code, 1)
  t.equal(inUse.stderr, `ERROR: cannot listen on 127.0.0.1:${webui.port}: the address is already in use\n`)

  const bad = await warren(['proxy', 'port', '--listen=localhost', `--identity=${alice}`, 'lab-1', 'webui'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, '--listen needs a port')
})
