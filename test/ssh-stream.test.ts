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
import { readFileSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { PROFILE_FILES } from '../cli/profile.ts'
import { fdpassProxyCommand } from '../cli/ssh-stream.ts'
import { parseHostPort } from '../shared/address.ts'
import { type DialReply, parseDialReply } from '../shared/protocol/dial.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import { parseSshStreamChallenge, SSH_STREAM_MAGIC, type SshStreamRequest, signSshStream } from '../shared/protocol/ssh-stream.ts'
import { AuthProcess, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { selfSignedCertificate } from './helpers/self-signed-cert.ts'
import { until } from './helpers/until.ts'

t.setTimeout(120_000)

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
t.teardown(() => proxy.stop())

async function node(name: string, env: string): Promise<void> {
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(config, ['version: v1', `data_dir: ${dir}`, `labels: { env: ${env} }`].join('\n'))
  const daemon = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => daemon.stop())
  await waitForNode(auth, name)
}
await node('lab-1', 'lab')
await node('prod-1', 'prod')

const LAB_ROLE = 'kind: role\nversion: v1\nmetadata:\n  name: lab\nspec:\n  allow:\n    node_labels:\n      env: lab\n'
const created = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], { input: LAB_ROLE })
if (created.code !== 0) throw new Error(created.stderr)

/** Adds `name` with `roles` and signs OpenSSH credentials for it. */
async function user(name: string, roles: string): Promise<string> {
  const added = await auth.ctl(['users', 'add', name, `--logins=${testLogin()}`, `--roles=${roles}`])
  if (added.code !== 0) throw new Error(`users add: ${added.stderr}`)
  const dir = tempDir('warren-user-')
  const signed = await auth.ctl(['auth', 'sign', `--user=${name}`, '--ttl=1h', `--out=${dir}`, '--format=openssh', `--proxy=${proxy.web}`])
  if (signed.code !== 0) throw new Error(`auth sign: ${signed.stderr}`)
  return dir
}
const labUser = await user('lab-user', 'lab')
const credentials = (dir: string) => ({
  cert: new X509Certificate(readFileSync(join(dir, PROFILE_FILES.tlsCert))),
  key: createPrivateKey(readFileSync(join(dir, PROFILE_FILES.tlsKey))),
})

/** OpenSSH with the ssh_config of `dir`, its ProxyCommand replaced by the descriptor-passing one. */
function fdpassSsh(dir: string, args: string[]): ReturnType<typeof spawn> {
  const warren = `${process.execPath} ${join(ROOT, 'cli/warren.ts')}`
  const command = fdpassProxyCommand(warren, `--identity=${dir} %r@%h:%p`)
  return spawn('ssh', ['-F', join(dir, 'ssh_config'), '-o', 'BatchMode=yes', '-o', 'ProxyUseFdpass=yes', '-o', `ProxyCommand=${command}`, ...args], {
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

interface RawOptions {
  node: string
  cert: X509Certificate
  key: KeyObject
  /** Sign this challenge instead of the one the proxy sent (a replay). */
  challenge?: Buffer
}

/** Speaks the plain stream by hand; the proxy's reply, and for `ok` the node's first bytes. */
async function rawStream(options: RawOptions): Promise<{ reply: DialReply; challenge: Buffer; after: string }> {
  const { host, port } = parseHostPort(proxy.web, 0)
  const socket: Socket = connect({ host, port })
  await once(socket, 'connect')
  socket.write(SSH_STREAM_MAGIC)
  const challenge = Buffer.from((await readFirstMessage(socket, parseSshStreamChallenge)).challenge, 'base64')
  const signature = signSshStream(options.key, options.challenge ?? challenge, options.node)
  writeMessage<SshStreamRequest>(socket, { node: options.node, certificate: options.cert.raw.toString('base64'), signature })
  const reply = await readFirstMessage(socket, parseDialReply)
  // The node's SSH server speaks after the client's first byte; a refused stream only closes.
  if (reply.ok) socket.write('SSH-2.0-rawtest\r\n')
  let after = ''
  socket.on('data', (data) => {
    after += data
    if (after.includes('\n')) socket.destroy()
  })
  await once(socket, 'close')
  return { reply, challenge, after }
}

t.test('the proxy checks the user before any stream to a node', async (t) => {
  const lab = credentials(labUser)
  const good = await rawStream({ node: 'lab-1', ...lab })
  t.same(good.reply, { ok: true }, 'a signed challenge of a valid user opens the node')
  t.match(good.after, /^SSH-2\.0-/, "and the node's SSH server answers")

  const replayed = await rawStream({ node: 'lab-1', ...lab, challenge: good.challenge })
  t.same(replayed.reply, { ok: false, error: "the challenge is not signed by the certificate's key" }, "a signature made for another connection's challenge is refused")
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
  t.match(prod.reply, { error: /denied|not allowed|no node/ })
  t.equal(prod.after, '')

  const locked = await auth.ctl(['lock', '--user=lab-user', '--message=lent laptop'])
  t.equal(locked.code, 0, locked.stderr)
  let refused: DialReply = { ok: true }
  await until('the proxy to know the lock', async () => (refused = (await rawStream({ node: 'lab-1', ...lab })).reply).ok === false, { timeoutMs: 30_000 })
  t.match(refused, { ok: false, error: /lent laptop/ }, "a locked user is refused with the lock's message")
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
