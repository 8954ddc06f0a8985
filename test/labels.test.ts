// A rogue node's labels (a terminal escape that clears the screen, a CR/LF that forges a
// row) are refused by the auth server, ignored by the proxy, and never reach nodes ls; a
// node refuses them in its own config and flags.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { AgentTunnel } from '../agent/tunnel.ts'
import { parseHostPort } from '../shared/address.ts'
import { ApiClient } from '../shared/api-client.ts'
import { joinCluster } from '../shared/join.ts'
import { createLogger } from '../shared/log.ts'
import { AuthProcess, ProxyProcess, tempDir, waitForNode, warren } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const ROGUE = {
  motd: '\x1b[2J\x1b[H',
  note: 'x\r\nforged-row  00000000-0000-0000-0000-000000000000  10.0.0.1  admin=yes',
}

const auth = new AuthProcess()
let proxy: ProxyProcess
let pin: string
t.before(async () => {
  await auth.start()
  pin = await auth.pin()
  proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, env: { WARREN_LOG_FORMAT: 'json' } }).start()
})
t.teardown(async () => {
  await proxy?.stop()
  await auth.stop()
})

/** A node that joined for real (so it holds a valid host certificate), run by this test. */
async function rogueIdentity(nodename: string) {
  return joinCluster({ authServer: auth.address, token: await auth.token(), caPins: [pin], nodename, roles: ['node'] })
}

function assertCleanListing(t: Test, listing: string): void {
  t.notMatch(listing, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, 'nodes ls holds no control characters')
  t.notMatch(listing, /^forged-row/m, 'and no forged row')
}

t.test('a heartbeat with rogue labels is refused; nodes ls stays clean', async (t) => {
  const identity = await rogueIdentity('rogue-direct')
  const client = new ApiClient({ server: auth.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
  t.teardown(() => client.close())
  await t.rejects(
    client.request('POST', '/v1/heartbeat', { labels: ROGUE }),
    { status: 400, message: /field "labels": label "motd" holds a control character/ },
    'control characters in a value',
  )
  await t.rejects(
    client.request('POST', '/v1/heartbeat', { labels: { 'bad\x1b[2Jkey': 'v' } }),
    { status: 400, message: /is not a valid label name/ },
    'a key outside the alphabet',
  )
  await client.request('POST', '/v1/heartbeat', { labels: { site: 'lab' } })
  const listing = (await auth.ctl(['nodes', 'ls'])).stdout
  t.match(listing, /^rogue-direct\s.*\ssite=lab$/m, 'valid labels are shown')
  assertCleanListing(t, listing)
})

t.test('over a tunnel, the proxy ignores rogue labels and logs why', async (t) => {
  const identity = await rogueIdentity('rogue-tunnel')
  const { host, port } = parseHostPort(proxy.tunnel, 0)
  let labels: Record<string, string> = ROGUE
  const tunnel = await AgentTunnel.open({
    held: [],
    host,
    port,
    identity,
    keepAliveIntervalMs: 15_000,
    connectTimeoutMs: 5000,
    labels: () => labels,
    services: [],
    onStream: (s) => s.destroy(),
    log: createLogger('rogue', { level: 'error' }),
  })
  t.teardown(() => tunnel.close())
  tunnel.activate()
  const listing = await waitForNode(auth, 'rogue-tunnel')
  t.match(listing, /^rogue-tunnel\s+\S+\s+⟵ Tunnel$/m, 'the tunnel is up, without the labels')
  assertCleanListing(t, listing)
  const refusals = () => proxy.daemon.logEntries().filter((entry) => entry.level === 'warn' && entry.host_id === identity.hostId && entry.labels_refused !== undefined)
  await proxy.daemon.waitFor('the refusal to be logged', () => refusals().length === 1, 5000)

  labels = { site: 'lab' }
  tunnel.sendLabels(labels)
  await until('the new labels in nodes ls', async () => /^rogue-tunnel\s.*\ssite=lab$/m.test((await auth.ctl(['nodes', 'ls'])).stdout), { timeoutMs: 20_000 })
  tunnel.sendLabels(ROGUE)
  await proxy.daemon.waitFor('the second refusal', () => refusals().length === 2, 5000)
  const after = (await auth.ctl(['nodes', 'ls'])).stdout
  t.match(after, /^rogue-tunnel\s.*\ssite=lab$/m, 'the tunnel keeps its last valid labels')
  assertCleanListing(t, after)
})

t.test('a node refuses rogue labels in its flags and its config', async (t) => {
  const dir = tempDir()
  const flag = await warren(['start', '--roles=node', `--data-dir=${join(dir, 'data')}`, '--labels=motd=\x1b[2J'])
  t.equal(flag.code, 2, 'bad usage')
  t.match(flag.stderr, '--labels: label "motd" holds a control character')
  const config = join(dir, 'warren.yaml')
  writeFileSync(config, `version: v1\ndata_dir: ${join(dir, 'data')}\nlabels:\n  env: prod\n  note: "x\\r\\nforged-row"\n`)
  const file = await warren(['start', '--roles=node', `--config=${config}`])
  t.equal(file.code, 1)
  t.match(file.stderr, `${config}: line 5: "labels.note" holds a control character`)
})
