// A session channel runs one command, shell or subsystem. A client that sends a second such
// request on a channel that already runs one (stock ssh never does; any SSH library can) must
// be refused, and must not take the node's agent down: its SSH server runs in the agent, so
// a crash would end every user's sessions and every tunnel. Real processes: a node behind a
// tunnel, reached through the proxy by the user's own ProxyCommand, with ssh2 as the client.

import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Duplex } from 'node:stream'
import ssh2, { type ClientChannel } from 'ssh2'
import t from 'tap'
import { authAndProxy, openssh, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'

t.setTimeout(120_000)

const { auth, pin, proxy } = await authAndProxy(t)
const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=target'])
t.teardown(() => node.stop())
await waitForNode(auth, 'target')
const profile = await signUser(auth, proxy.web)

/** The user's ProxyCommand from the ssh_config `auth sign` wrote, for `login@target:22`, as a stream. */
function proxyStream(): Duplex {
  const line = readFileSync(join(profile, 'ssh_config'), 'utf8')
    .split('\n')
    .find((entry) => entry.trim().startsWith('ProxyCommand '))
  if (!line) throw new Error('no ProxyCommand in the ssh_config')
  const command = line.trim().slice('ProxyCommand '.length).replaceAll('%r', testLogin()).replaceAll('%h', 'target').replaceAll('%p', '22')
  const child = spawn('sh', ['-c', command], { stdio: ['pipe', 'pipe', 'inherit'] })
  return Duplex.from({ writable: child.stdin, readable: child.stdout })
}

/** An ssh2 client logged in as testLogin() with the user's key and certificate. */
async function login(): Promise<ssh2.Client> {
  const parsed = ssh2.utils.parseKey(readFileSync(join(profile, 'id_ed25519'), 'utf8'))
  if (parsed instanceof Error) throw parsed
  const blob = Buffer.from(readFileSync(join(profile, 'id_ed25519-cert.pub'), 'utf8').split(' ')[1], 'base64')
  const key: ssh2.ParsedKey = Object.create(parsed, { type: { value: 'ssh-ed25519-cert-v01@openssh.com' }, getPublicSSH: { value: () => blob } })
  const method: ssh2.PublicKeyAuthMethod = { type: 'publickey', username: testLogin(), key }
  const client = new ssh2.Client()
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve())
    client.once('error', reject)
    client.connect({ sock: proxyStream(), username: testLogin(), authHandler: [method], hostVerifier: () => true })
  })
  return client
}

type Protocol = {
  exec(id: number, command: string, wantReply: boolean): void
  shell(id: number, wantReply: boolean): void
  subsystem(id: number, name: string, wantReply: boolean): void
}
type Internals = { _protocol: Protocol }
type ChannelInternals = { outgoing: { id: number }; _callbacks: ((failed: boolean) => void)[] }

/** Runs `sleep 1; echo first done`, sends `second` on its channel, and resolves with the output and whether the second request failed. */
async function secondRequest(second: (protocol: Protocol, id: number) => void): Promise<{ output: string; refused: boolean | undefined }> {
  const client = await login()
  const channel = await new Promise<ClientChannel>((resolve, reject) => client.exec('sleep 1; echo first done', (error, ch) => (error ? reject(error) : resolve(ch))))
  let output = ''
  channel.on('data', (chunk: Buffer) => (output += chunk))
  let refused: boolean | undefined
  const internals = channel as unknown as ChannelInternals
  internals._callbacks.push((failed) => (refused = failed))
  second((client as unknown as Internals)._protocol, internals.outgoing.id)
  await new Promise((resolve) => channel.once('close', resolve))
  client.end()
  return { output, refused }
}

const nodeAlive = async () => (await node.waitForStatus('the node', (status) => status.node !== undefined)).node !== undefined

t.test('a second exec on a running channel is refused and runs nothing; the first goes on', async (t) => {
  const marker = join(tempDir(), 'second-ran')
  const { output, refused } = await secondRequest((protocol, id) => protocol.exec(id, `touch ${marker}`, true))
  t.equal(output, 'first done\n', 'the first command ends as it would have')
  t.equal(refused, true, 'the second is refused')
  t.notOk(existsSync(marker), 'and never ran')
  t.ok(await nodeAlive(), "the node's agent still answers")
})

t.test('a second shell, or an sftp subsystem, on a running channel is refused; the agent carries on', async (t) => {
  for (const [name, second] of [
    ['shell', (protocol: Protocol, id: number) => protocol.shell(id, true)],
    ['sftp', (protocol: Protocol, id: number) => protocol.subsystem(id, 'sftp', true)],
  ] as const) {
    const { output, refused } = await secondRequest(second)
    t.equal(output, 'first done\n', `${name}: the first command ends as it would have`)
    t.equal(refused, true, `${name}: the second request is refused`)
  }
  t.ok(await nodeAlive(), "the node's agent still answers")
  const after = await openssh(profile, [`${testLogin()}@target`, 'echo still reachable'])
  t.equal(after.stdout, 'still reachable\n', `and serves a new session (${after.stderr.trim()})`)
})
