// The plain SSH stream with real processes: stock OpenSSH with ProxyUseFdpass reaches a node
// through the proxy, and once the session runs no process of ours stands between ssh and
// the proxy. A client speaking the stream's protocol by hand is refused, before any stream
// to a node is opened, when it replays a signature made for another connection, signs with
// a key that is not its certificate's, brings a certificate of no CA of the cluster, asks
// for a node its roles do not allow, or is a locked user; the same client signing properly
// gets the node's SSH banner, so each refusal is the proxy's.

import { execFile, spawn } from 'node:child_process'
import { createPrivateKey, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { PROFILE_FILES } from '../cli/profile.ts'
import { dialSshStream, fdpassProxyCommand } from '../cli/ssh-stream.ts'
import { parseHostPort } from '../shared/address.ts'
import { loadIdentity, splitPems } from '../shared/identity-store.ts'
import { type DialReply, parseDialReply } from '../shared/protocol/dial.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import { ClientHandshake, ProxyHandshake, parseSshStreamHello, parseSshStreamSealed, SSH_STREAM_MAGIC, type SshStreamSealed } from '../shared/protocol/ssh-stream.ts'
import { exchangeKeys, openJson, rawX25519, sealJson } from '../shared/sealed-box.ts'
import { AuthProcess, JSON_LOGS, logEntries, ProxyProcess, ROOT, run, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { selfSignedCertificate } from './helpers/self-signed-cert.ts'
import { until } from './helpers/until.ts'

t.setTimeout(120_000)

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
t.teardown(() => proxy.stop())

/** Each node's daemon, by name: its JSON log is what a test reads of the node's side. */
const nodes = new Map<string, ReturnType<typeof startNode>>()
async function node(name: string, env: string): Promise<void> {
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(config, ['version: v1', `data_dir: ${dir}`, `labels: { env: ${env} }`, JSON_LOGS].join('\n'))
  const daemon = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => daemon.stop())
  nodes.set(name, daemon)
  await waitForNode(auth, name)
}
await node('lab-1', 'lab')
await node('prod-1', 'prod')

const LAB_ROLE = 'kind: role\nversion: v1\nmetadata:\n  name: lab\nspec:\n  allow:\n    logins: ["{{internal.logins}}"]\n    node_labels:\n      env: lab\n'
const created = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], { input: LAB_ROLE })
if (created.code !== 0) throw new Error(created.stderr)

const user = (name: string, roles: string) => signUser(auth, proxy.web, name, roles)
const labUser = await user('lab-user', 'lab')
const credentials = (dir: string) => ({
  cert: new X509Certificate(readFileSync(join(dir, PROFILE_FILES.tlsCert))),
  key: createPrivateKey(readFileSync(join(dir, PROFILE_FILES.tlsKey))),
})

const clusterName = JSON.parse(readFileSync(join(labUser, PROFILE_FILES.profile), 'utf8')).cluster_name as string
const caPems = splitPems(readFileSync(join(labUser, PROFILE_FILES.hostCA), 'utf8'))
const warrenCommand = `${process.execPath} ${join(ROOT, 'cli/warren.ts')}`

/** OpenSSH with the ssh_config of `dir`, its ProxyCommand replaced by the descriptor-passing one (options first win). */
function fdpassSsh(dir: string, args: string[], options: string[] = []): ReturnType<typeof spawn> {
  const command = fdpassProxyCommand(warrenCommand, `--identity=${dir} %r@%h:%p`)
  return spawn('ssh', ['-F', join(dir, 'ssh_config'), '-o', 'BatchMode=yes', '-o', 'ProxyUseFdpass=yes', ...options, '-o', `ProxyCommand=${command}`, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

/** Processes whose command line names `dir`: a ProxyCommand still running for that user. */
function processesNaming(dir: string): Promise<string[]> {
  return new Promise((resolve) => execFile('pgrep', ['-af', `--identity=${dir}`], (_error, stdout) => resolve(stdout.split('\n').filter((line) => line.includes('proxy ssh')))))
}

t.test('stock ssh with ProxyUseFdpass reaches the node, and no process of ours stays in the byte path', async (t) => {
  const ssh = fdpassSsh(labUser, [`${testLogin()}@lab-1`, 'echo via-$((6*7)); sleep 1; echo done; exit 3'])
  const exited = once(ssh, 'exit')
  let output = ''
  let errors = ''
  ssh.stdout!.on('data', (data) => (output += data))
  ssh.stderr!.on('data', (data) => (errors += data))
  await until('the command to start on the node', async () => output.includes('via-42'), { timeoutMs: 30_000 })
  t.same(await processesNaming(labUser), [], 'the ProxyCommand has exited while the session runs')
  const [code] = await exited
  t.equal(code, 3, `the exit status comes back (${errors.trim()})`)
  t.equal(output, 'via-42\ndone\n', 'the session went on after the hand-over')
})

t.test('an ssh_config signed with --fdpass: stock ssh given only -F hands its connection over', async (t) => {
  const dir = tempDir('warren-user-')
  const signed = await auth.ctl(['auth', 'sign', '--user=lab-user', '--ttl=1h', `--out=${dir}`, '--format=openssh', `--proxy=${proxy.web}`, '--fdpass'])
  t.equal(signed.code, 0, signed.stderr)
  const ssh = spawn('ssh', ['-F', join(dir, 'ssh_config'), '-o', 'BatchMode=yes', `${testLogin()}@lab-1`, 'echo signed-$((6*7)); sleep 1; echo done'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = once(ssh, 'exit')
  let output = ''
  let errors = ''
  ssh.stdout.on('data', (data) => (output += data))
  ssh.stderr.on('data', (data) => (errors += data))
  await until('the command to start on the node', async () => output.includes('signed-42'), { timeoutMs: 30_000 })
  t.same(await processesNaming(dir), [], 'the ProxyCommand has exited while the session runs')
  const [code] = await exited
  t.equal(code, 0, errors)
  t.equal(output, 'signed-42\ndone\n')

  const plain = tempDir('warren-user-')
  const refused = await auth.ctl(['auth', 'sign', '--user=lab-user', `--out=${plain}`, '--fdpass'])
  t.equal(refused.code, 2, '--fdpass without an ssh_config to write is a usage error')
  t.notOk(existsSync(join(plain, PROFILE_FILES.profile)), 'and writes nothing')
})

t.test('warren ssh --fdpass runs a command on a node and on every node a selector matches', async (t) => {
  const one = await warren(['ssh', '--fdpass', `--identity=${labUser}`, `${testLogin()}@lab-1`, 'echo one-$((6*7))'])
  t.equal(one.code, 0, one.stderr)
  t.equal(one.stdout, 'one-42\n')
  const many = await warren(['ssh', '--fdpass', `--identity=${labUser}`, `${testLogin()}@env=*`, 'echo many'])
  t.equal(many.code, 0, many.stderr)
  t.equal(many.stdout, '[lab-1] many\n', "on the nodes the user's roles allow")
})

/** A TCP relay to the proxy that keeps what each side sent: what a passive observer on the path sees. */
async function recordingRelay(): Promise<{ port: number; sent: () => Buffer[]; received: () => Buffer[] }> {
  const { host, port } = parseHostPort(proxy.web, 0)
  const connections: Array<{ sent: Buffer[]; received: Buffer[] }> = []
  const server = createServer((client) => {
    const upstream = connect({ host, port })
    const seen = { sent: [] as Buffer[], received: [] as Buffer[] }
    connections.push(seen)
    client.on('data', (data) => seen.sent.push(data))
    upstream.on('data', (data) => seen.received.push(data))
    client.pipe(upstream).pipe(client)
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return {
    port: (server.address() as { port: number }).port,
    sent: () => connections.map((seen) => Buffer.concat(seen.sent)),
    received: () => connections.map((seen) => Buffer.concat(seen.received)),
  }
}

/** The ID of the lock `warrenctl lock` made, from what it printed. */
const lockId = (stdout: string) => /with ID "([^"]+)"/.exec(stdout)?.[1] ?? 'none printed'

/** Reads one line from `socket` (leaving nothing else read: the peer sends no more until answered). */
const line = (socket: Socket) => readFirstMessage(socket, (value) => value)

/**
 * Speaks the plain stream by hand as `cert`'s holder would, signing with `key`, or sends
 * `raw` bytes instead of the request; the proxy's reply, and for an acceptance the node's
 * first line after a client banner.
 */
async function rawStream(options: { node: string; cert: X509Certificate; key: KeyObject; raw?: Buffer }): Promise<{ reply: DialReply; after: string }> {
  const { host, port } = parseHostPort(proxy.web, 0)
  const socket: Socket = connect({ host, port })
  await once(socket, 'connect')
  socket.write(SSH_STREAM_MAGIC)
  const hello = parseSshStreamHello(await line(socket))
  const handshake = new ClientHandshake()
  if (options.raw) socket.write(options.raw)
  else writeMessage<SshStreamSealed>(socket, handshake.request(hello, { clusterName, caPems }, options.node, options.cert, options.key))
  const answer = await line(socket)
  const reply = options.raw ? parseDialReply(answer) : handshake.reply(answer)
  // The node's SSH server speaks after the client's first byte; a refused stream only closes.
  if (reply.ok) socket.write('SSH-2.0-rawtest\r\n')
  let after = ''
  socket.on('data', (data) => {
    after += data
    if (after.includes('\n')) socket.destroy()
  })
  await once(socket, 'close')
  return { reply, after }
}

t.test('the proxy checks the user before any stream to a node; an observer learns neither from the request', async (t) => {
  const lab = credentials(labUser)
  const good = await rawStream({ node: 'lab-1', ...lab })
  t.same(good.reply, { ok: true }, 'a signed challenge of a valid user opens the node')
  t.match(good.after, /^SSH-2\.0-/, "and the node's SSH server answers")

  // What the real client sends, seen on the path, then sent again on a new connection.
  const relay = await recordingRelay()
  const observed = fdpassProxyCommand(warrenCommand, `--identity=${labUser} --proxy=127.0.0.1:${relay.port} %r@%h:%p`)
  const seen = fdpassSsh(labUser, [`${testLogin()}@lab-1`, 'true'], ['-o', `ProxyCommand=${observed}`])
  t.equal((await once(seen, 'exit'))[0], 0, 'a session through the observed path')
  // The ProxyCommand's HTTPS request for host keys took the relay too: the stream is the other connection.
  const streamIndex = relay.sent().findIndex((bytes) => bytes.subarray(0, SSH_STREAM_MAGIC.length).toString() === SSH_STREAM_MAGIC)
  const sent = relay.sent()[streamIndex] ?? Buffer.alloc(0)
  const received = relay.received()[streamIndex] ?? Buffer.alloc(0)
  const request = sent.subarray(SSH_STREAM_MAGIC.length, sent.indexOf('\n', SSH_STREAM_MAGIC.length) + 1)
  t.ok(request.length > 0 && request.toString().startsWith('{'), 'the observer saw the sealed request')
  for (const secret of ['lab-user', 'lab-1', lab.cert.raw.toString('base64').slice(0, 40)]) {
    t.notOk(sent.includes(secret), `and cannot read ${secret === 'lab-1' ? 'the node' : secret === 'lab-user' ? 'the user' : 'the certificate'} in what the client sent`)
  }
  // SSH's key exchange shows the node's host certificate (its name) in the clear, as SECURITY.md
  // says; the user's name and certificate go only in SSH's encrypted user authentication.
  t.ok(received.length > 0, 'the observer saw what the proxy and the node sent back')
  for (const secret of ['lab-user', lab.cert.raw.toString('base64').slice(0, 40)]) {
    t.notOk(received.includes(secret), `and cannot read the ${secret === 'lab-user' ? 'user' : 'certificate'} in it`)
  }
  const replayed = await rawStream({ node: 'lab-1', ...lab, raw: request })
  t.same(replayed.reply, { ok: false, error: 'the sealed message does not open with this connection’s key' }, 'the recorded request replayed on a new connection is refused')
  t.equal(replayed.after, '', 'and nothing of the node follows')

  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  const stolen = await rawStream({ node: 'lab-1', cert: lab.cert, key: otherKey })
  t.same(stolen.reply, { ok: false, error: "the challenge is not signed by the certificate's key" }, 'a certificate whose key the client does not hold is refused')
  t.equal(stolen.after, '')

  const forged = selfSignedCertificate()
  const foreign = await rawStream({ node: 'lab-1', cert: new X509Certificate(forged.cert), key: createPrivateKey(forged.key) })
  t.same(foreign.reply, { ok: false, error: 'a valid user certificate of this cluster is required' }, 'a certificate of no CA of the cluster is refused')
  t.equal(foreign.after, '')

  const prod = await rawStream({ node: 'prod-1', ...lab })
  t.equal(prod.reply.ok, false, "a node the user's roles do not allow is refused")
  t.equal(prod.after, '')

  const locked = await auth.ctl(['lock', '--user=lab-user', '--message=lent laptop'])
  t.equal(locked.code, 0, locked.stderr)
  let refused: DialReply = { ok: true }
  // A stream accepted just before the lock arrived is closed by it, unanswered: try again.
  const tryStream = () =>
    rawStream({ node: 'lab-1', ...lab }).then(
      (result) => result.reply,
      () => ({ ok: true }) as DialReply,
    )
  await until('the proxy to know the lock', async () => (refused = await tryStream()).ok === false, { timeoutMs: 30_000 })
  t.match(refused, { ok: false, error: /lent laptop/ }, "a locked user is refused with the lock's message")
  t.equal((await auth.ctl(['lock', 'rm', lockId(locked.stdout)])).code, 0)
  await until('the proxy to know the lock ended', async () => (await tryStream()).ok, { timeoutMs: 30_000 })
})

t.test('the client shows nothing to a server that is not a proxy of the cluster', async (t) => {
  const forged = selfSignedCertificate()
  let received = ''
  const impostor = createServer((socket) => {
    socket.on('data', (data) => {
      received += data
      if (received === SSH_STREAM_MAGIC) writeMessage(socket, new ProxyHandshake().hello(new X509Certificate(forged.cert), createPrivateKey(forged.key)))
    })
    socket.on('error', () => {})
  })
  impostor.listen(0, '127.0.0.1')
  await once(impostor, 'listening')
  t.teardown(() => impostor.close())
  const port = (impostor.address() as { port: number }).port
  await t.rejects(dialSshStream('127.0.0.1', port, labUser, 'lab-1'), /not a proxy of this cluster/, 'the client refuses the impostor')
  t.equal(received, SSH_STREAM_MAGIC, 'having sent nothing but its first line')
})

/** Whether `socket`'s first line is the stream's (read), or it is another protocol (left unread). */
async function startsStream(socket: Socket): Promise<boolean> {
  let read = Buffer.alloc(0)
  while (read.length < SSH_STREAM_MAGIC.length) {
    const chunk = socket.read() as Buffer | null
    if (!chunk) {
      await once(socket, 'readable')
      continue
    }
    read = Buffer.concat([read, chunk])
    if (!SSH_STREAM_MAGIC.startsWith(read.subarray(0, SSH_STREAM_MAGIC.length).toString('latin1'))) break
  }
  socket.unshift(read.subarray(SSH_STREAM_MAGIC.length))
  if (read.subarray(0, SSH_STREAM_MAGIC.length).toString('latin1') === SSH_STREAM_MAGIC) return true
  socket.unshift(read.subarray(0, SSH_STREAM_MAGIC.length))
  return false
}

/**
 * A relay holding a proxy's keys (a proxy removed from the cluster whose certificate clients
 * still trust): it passes the real proxy's stream challenge on under its own ephemeral key, opens
 * the client's request, seals it again for the real proxy, and notes what it read and the
 * real proxy's reply.
 */
async function reSealingRelay(): Promise<{ port: number; seen: Array<{ node: string; reply: DialReply }> }> {
  const stolen = loadIdentity(proxy.dataDir!, 'proxy')!
  const stolenCert = new X509Certificate(stolen.tlsCertPem)
  const stolenKey = createPrivateKey(stolen.tlsKeyPem)
  const { host, port } = parseHostPort(proxy.web, 0)
  const seen: Array<{ node: string; reply: DialReply }> = []
  const server = createServer(async (client) => {
    const upstream = connect({ host, port })
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    try {
      // The ProxyCommand's HTTPS request for host keys passes as it is.
      if (!(await startsStream(client))) return void client.pipe(upstream).pipe(client)
      upstream.write(SSH_STREAM_MAGIC)
      const real = parseSshStreamHello(await line(upstream))
      const posing = new ProxyHandshake()
      ;(posing as { challenge: Buffer }).challenge = Buffer.from(real.challenge, 'base64')
      writeMessage(client, posing.hello(stolenCert, stolenKey))
      const { request } = posing.openRequest(parseSshStreamSealed(await line(client)))
      // Sealed again for the real proxy, as a client would seal it (shared/protocol/ssh-stream.ts).
      const ephemeral = generateKeyPairSync('x25519')
      const key = rawX25519(ephemeral.publicKey)
      const keys = exchangeKeys(ephemeral.privateKey, real.key, Buffer.from(real.challenge, 'base64'), `warren ssh stream v2\0${key}\0${real.key}`)
      writeMessage<SshStreamSealed>(upstream, { key, sealed: sealJson(keys.request, request) })
      const answer = (await line(upstream)) as SshStreamSealed
      const reply = parseDialReply(openJson(keys.reply, answer.sealed))
      seen.push({ node: request.node, reply })
      writeMessage(client, posing.reply(reply))
      if (!reply.ok) return void client.end()
      client.pipe(upstream).pipe(client)
    } catch {
      client.destroy()
      upstream.destroy()
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return { port: (server.address() as { port: number }).port, seen }
}

t.test("a relay with a proxy's keys cannot pass a client's request on under its own key", async (t) => {
  const relay = await reSealingRelay()
  const through = fdpassProxyCommand(warrenCommand, `--identity=${labUser} --proxy=127.0.0.1:${relay.port} %r@%h:%p`)
  const session = fdpassSsh(labUser, [`${testLogin()}@lab-1`, 'true'], ['-o', `ProxyCommand=${through}`])
  t.not((await once(session, 'exit'))[0], 0, 'no session through the relay')
  t.equal(relay.seen.length, 1, 'the relay opened the request it was sent')
  t.same(
    relay.seen[0]?.reply,
    { ok: false, error: "the challenge is not signed by the certificate's key" },
    "the real proxy refused it: the user signed the key it was shown, not the proxy's",
  )
})

t.test('a connection that is not a stream of this version is closed unanswered', async (t) => {
  const { host, port } = parseHostPort(proxy.web, 0)
  const socket = connect({ host, port })
  await once(socket, 'connect')
  socket.write('WARREN-SSH-STREAM/9\n')
  let received = ''
  socket.on('data', (data) => (received += data))
  await once(socket, 'close')
  t.same(JSON.parse(received), { ok: false, error: 'not a plain SSH stream of this version' }, 'answered why, then closed')
})

/**
 * Takes over a plain stream after its reply, as an attacker on the user's path could, and
 * serves it to stock ssh run with the identity of `dir`: the session's output and exit status.
 */
async function takenOver(stream: Socket, dir: string, command: string): Promise<{ code: number | null; output: string }> {
  const server = createServer((client) => {
    client.pipe(stream).pipe(client)
    client.on('error', () => stream.destroy())
    stream.on('error', () => client.destroy())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const { port } = server.address() as { port: number }
  const pipeTo = `${process.execPath} -e "const s = require('node:net').connect(${port}, '127.0.0.1'); process.stdin.pipe(s).pipe(process.stdout)"`
  // The attacker has no use for the node's host key: it is not checked.
  const ssh = spawn(
    'ssh',
    [
      '-F',
      join(dir, 'ssh_config'),
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      `ProxyCommand=${pipeTo}`,
      `${testLogin()}@lab-1`,
      command,
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  )
  let output = ''
  ssh.stdout.on('data', (data) => (output += data))
  const [code] = await once(ssh, 'exit')
  return { code, output }
}

/** Waits until a lock reaches the proxy: it refuses the certificate of `dir` on a plain stream to lab-1. */
const proxyRefuses = (dir: string) =>
  until('the proxy to refuse the certificate', async () => (await rawStream({ node: 'lab-1', ...credentials(dir) }).catch(() => ({ reply: { ok: true } }))).reply.ok === false, {
    timeoutMs: 30_000,
  })

/** Waits until lab-1's JSON log has an entry with these fields. */
const nodeLogged = (fields: Record<string, unknown>) => until('the node to log it', async () => logEntries(nodes.get('lab-1')!.stderr, fields).length > 0, { timeoutMs: 10_000 })

t.test('a stream taken over after its reply logs in no one but the user the proxy judged', async (t) => {
  const { host, port } = parseHostPort(proxy.web, 0)
  // Mallory's roles allow lab-1, but she is locked: the proxies refuse her.
  const mallory = await user('mallory', 'lab')
  const locked = await auth.ctl(['lock', '--user=mallory', '--message=left the company'])
  t.equal(locked.code, 0, locked.stderr)
  await proxyRefuses(mallory)

  // The mechanics of the take-over: the user whose stream it is logs in over it.
  const own = await takenOver(await dialSshStream(host, port, labUser, 'lab-1'), labUser, 'echo own-$((6*7))')
  t.equal(own.code, 0, 'the user the proxy judged logs in on the stream taken over')
  t.equal(own.output, 'own-42\n')

  // Mallory, on the path of lab-user's connection, lets its handshake through and takes it after the reply.
  const taken = await takenOver(await dialSshStream(host, port, labUser, 'lab-1'), mallory, 'echo taken-$((6*7))')
  t.not(taken.code, 0, 'the locked user gets no session on the stream the proxy opened for another')
  t.equal(taken.output, '', 'and runs nothing')
  await nodeLogged({ key_id: 'mallory', stream_user: 'lab-user' })
  t.pass("the node refused her certificate on lab-user's stream")
  t.equal((await auth.ctl(['lock', 'rm', lockId(locked.stdout)])).code, 0)
})

t.test("a stream taken over from a user's new connection refuses that user's certificates from before a reset", async (t) => {
  const { host, port } = parseHostPort(proxy.web, 0)
  const before = await user('reset-user', 'lab')
  const reset = await auth.ctl(['users', 'reset', 'reset-user'])
  t.equal(reset.code, 0, reset.stderr)
  await proxyRefuses(before)
  const after = tempDir('warren-user-')
  const signed = await auth.ctl(['auth', 'sign', '--user=reset-user', '--ttl=1h', `--out=${after}`, '--format=openssh', `--proxy=${proxy.web}`])
  t.equal(signed.code, 0, signed.stderr)

  const own = await takenOver(await dialSshStream(host, port, after, 'lab-1'), after, 'echo new-$((6*7))')
  t.equal(own.code, 0, 'the certificate issued after the reset logs in on its stream taken over')
  t.equal(own.output, 'new-42\n')
  const old = await takenOver(await dialSshStream(host, port, after, 'lab-1'), before, 'echo old-$((6*7))')
  t.not(old.code, 0, 'the same user’s certificate from before the reset is refused on it')
  t.equal(old.output, '', 'and runs nothing')
  await nodeLogged({ key_id: 'reset-user', stream_user: 'reset-user', locked: true })
  t.pass("the node refused the locked certificate on the user's own stream")
})
