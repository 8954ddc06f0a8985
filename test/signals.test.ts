// SIGHUP reloads what can change without a restart (labels, forwarded ports, log level),
// and a config that does not load changes nothing; SIGTERM drains: the agent says GoAway
// and closes its tunnels cleanly.

import { writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { AuthProcess, ProxyProcess, signUser, startNode, tempDir, waitForNode, warren } from './helpers/cluster.ts'

t.test('SIGHUP reloads labels and forwarded ports; SIGTERM drains', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, env: { WARREN_LOG_FORMAT: 'json' } }).start()
  t.teardown(() => proxy.stop())
  const echo = createServer((socket) => {
    socket.on('error', () => {}) // a signalled agent may reset its connections: expected here
    socket.pipe(socket)
  })
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r))
  t.teardown(() => echo.close())
  const echoPort = (echo.address() as { port: number }).port

  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  const write = (labels: string, ports: string, more = '') =>
    writeFileSync(config, `version: v1\ndata_dir: ${dir}\nnodename: hup-node\nlabels: { ${labels} }\nssh_service:\n  forward_ports: [${ports}]\n${more}`)
  write('stage: one', '')
  const node = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`])
  t.teardown(() => node.stop())
  t.match(await waitForNode(auth, 'hup-node'), /^hup-node\s.*stage=one$/m)
  const profile = await signUser(auth, proxy.web)
  t.match((await warren(['proxy', 'port', `--identity=${profile}`, 'hup-node', 'echo'], { input: 'x' })).stderr, /no service "echo"/)

  write('stage: two', `{ name: echo, addr: "127.0.0.1:${echoPort}" }`)
  node.child.kill('SIGHUP')
  const reloaded = await node.waitForStatus('the reload', (status) => status.process.last_reload?.ok === true)
  t.equal(reloaded.process.last_reload!.not_applied, undefined, 'labels and ports: all applied')
  const deadline = Date.now() + 20_000
  let listing = ''
  while (Date.now() < deadline && !/stage=two/.test(listing)) listing = (await auth.ctl(['nodes', 'ls'])).stdout
  t.match(listing, /^hup-node\s.*stage=two$/m, 'the new labels reach nodes ls')
  t.equal((await warren(['proxy', 'port', `--identity=${profile}`, 'hup-node', 'echo'], { input: 'reloaded' })).stdout, 'reloaded', 'the new port is served')

  // Keys only a restart applies are named, not claimed applied.
  write('stage: two', `{ name: echo, addr: "127.0.0.1:${echoPort}" }`, 'log: { format: json, level: debug }\n')
  node.child.kill('SIGHUP')
  const partly = await node.waitForStatus('the reload naming what waits', (status) => status.process.last_reload?.not_applied !== undefined)
  t.same(partly.process.last_reload!.not_applied, ['log.format'], 'log.level applies, log.format waits for a restart')

  writeFileSync(config, 'version: v1\nlabels: [not, a, map]\n')
  node.child.kill('SIGHUP')
  const refused = await node.waitForStatus('the refusal', (status) => status.process.last_reload?.ok === false)
  t.match(refused.process.last_reload!.error, /line 2/, 'the reason names the line')
  t.same(refused.node!.labels, { stage: 'two' }, 'a bad file changes nothing')
  t.ok(node.running, 'and the agent keeps running')
  t.equal((await warren(['proxy', 'port', `--identity=${profile}`, 'hup-node', 'echo'], { input: 'still' })).stdout, 'still')

  const hostId = (await node.status()).node!.host_id
  await node.stop('SIGTERM')
  t.equal(await node.exited, 0, 'the agent exits cleanly on SIGTERM')
  const closed = () => proxy.daemon.logEntries().filter((entry) => entry.tunnel === 'closed' && entry.host_id === hostId)
  await proxy.daemon.waitFor('the proxy to see the tunnel close', () => closed().length > 0)
  t.same(
    closed().map((entry) => entry.error),
    [undefined],
    'closed without an error: the agent said GoAway and closed',
  )
  t.equal((await proxy.daemon.status()).proxy!.tunnels.count, 0)
})
