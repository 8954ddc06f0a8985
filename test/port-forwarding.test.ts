// Where a user's `ssh -L` may lead from a node: `ssh_service.port_forwarding` decides, with
// a stock OpenSSH client through a real proxy and tunnel. Under the default (declared) only
// the node's forward_ports are reachable; `any` reaches what the node can; `off` nothing.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { AuthProcess, freePort, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
t.teardown(() => proxy.stop())

/** An echo server that counts the connections it accepted. */
async function countingEcho(): Promise<{ server: Server; port: number; accepted: () => number }> {
  let accepted = 0
  const server = createServer((socket) => {
    accepted++
    socket.pipe(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return { server, port: (server.address() as { port: number }).port, accepted: () => accepted }
}

const declared = await countingEcho()
const undeclared = await countingEcho()

/** A node whose config declares `declared` as webui, with `port_forwarding: mode` (or the default). */
async function nodeWith(name: string, mode?: string): Promise<void> {
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(
    config,
    [
      'version: v1',
      `data_dir: ${dir}`,
      'ssh_service:',
      `  forward_ports: [{ name: webui, addr: "127.0.0.1:${declared.port}" }]`,
      ...(mode ? [`  port_forwarding: ${mode}`] : []),
      '',
    ].join('\n'),
  )
  const node = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => node.stop())
  await waitForNode(auth, name)
}

await nodeWith('fwd-default')
await nodeWith('fwd-any', 'any')
await nodeWith('fwd-off', 'off')
const profile = await signUser(auth, proxy.web)

/**
 * `ssh -N -L` from a local port to each target port on `node`; then, for each, what a
 * connection to the local end echoes back ('' when the node refused the channel) and how
 * many connections the target accepted meanwhile.
 */
async function throughForwards(node: string, targets: { port: number; accepted: () => number }[]): Promise<{ echoed: string; reached: number }[]> {
  const locals = await Promise.all(targets.map(() => freePort()))
  const forwards = targets.flatMap((target, i) => ['-L', `${locals[i]}:127.0.0.1:${target.port}`])
  const ssh = spawn('ssh', ['-F', join(profile, 'ssh_config'), '-N', '-o', 'ExitOnForwardFailure=yes', ...forwards, `${testLogin()}@${node}`], { stdio: 'ignore' })
  const exited = once(ssh, 'exit')
  try {
    const results = []
    for (const [i, target] of targets.entries()) {
      const before = target.accepted()
      const echoed = await echoThrough(locals[i], `hello ${node}`)
      results.push({ echoed, reached: target.accepted() - before })
    }
    return results
  } finally {
    ssh.kill('SIGKILL')
    await exited
  }
}

/** Sends `text` to 127.0.0.1:port, retrying while ssh has not opened it, and returns what came back before the close. */
async function echoThrough(port: number, text: string): Promise<string> {
  for (let attempt = 0; attempt < 150; attempt++) {
    const reply = await new Promise<string | undefined>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () => socket.write(text))
      let got = ''
      socket.setTimeout(10_000, () => socket.destroy())
      socket.on('data', (d) => {
        got += d
        if (got.length >= text.length) socket.destroy()
      })
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED' ? undefined : got))
      socket.on('close', () => resolve(got))
    })
    if (reply !== undefined) return reply
    await sleep(100)
  }
  throw new Error(`nothing listened on 127.0.0.1:${port}`)
}

t.test('declared (the default): forward_ports only', async (t) => {
  const [toDeclared, toUndeclared] = await throughForwards('fwd-default', [declared, undeclared])
  t.same(toDeclared, { echoed: 'hello fwd-default', reached: 1 }, 'a declared port is reached')
  t.same(toUndeclared, { echoed: '', reached: 0 }, 'an undeclared port is refused: nothing connects to it')
})

t.test('any: every port the node can reach', async (t) => {
  const [toUndeclared] = await throughForwards('fwd-any', [undeclared])
  t.same(toUndeclared, { echoed: 'hello fwd-any', reached: 1 })
})

t.test('off: no forwarding at all', async (t) => {
  const [toDeclared, toUndeclared] = await throughForwards('fwd-off', [declared, undeclared])
  t.same(toDeclared, { echoed: '', reached: 0 }, 'not even a declared port')
  t.same(toUndeclared, { echoed: '', reached: 0 })
})
