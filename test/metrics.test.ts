// Metrics as an operator's Prometheus sees them: Debian's prometheus scrapes a real auth
// server, proxy and node (each with diag_addr), and its query API must show the joins and
// the tunnel; promtool accepts each endpoint's output.

import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { AuthProcess, freePort, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

async function get(address: string, path: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`http://${address}${path}`)
  return { status: response.status, text: await response.text() }
}

/** A Prometheus scraping `targets` (job name → HOST:PORT) every second. */
async function startPrometheus(t: Test, targets: Record<string, string>): Promise<string> {
  const dir = tempDir('warren-prometheus-')
  const address = `127.0.0.1:${await freePort()}`
  const jobs = Object.entries(targets).map(([job, target]) => `  - job_name: ${job}\n    static_configs: [{ targets: ["${target}"] }]`)
  writeFileSync(join(dir, 'prometheus.yml'), ['global:', '  scrape_interval: 1s', '  scrape_timeout: 1s', 'scrape_configs:', ...jobs].join('\n'))
  const child = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=${address}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  t.teardown(() => {
    child.kill()
  })
  await until('prometheus to be ready', async () => (await get(address, '/-/ready').catch(() => ({ status: 0 }))).status === 200, { timeoutMs: 30_000 }).catch((error) => {
    throw new Error(`${(error as Error).message}\n${stderr}`)
  })
  return address
}

/** The value of an instant query's one sample, or undefined when it has none (not scraped yet). */
async function query(prometheus: string, expression: string): Promise<number | undefined> {
  const { text } = await get(prometheus, `/api/v1/query?query=${encodeURIComponent(expression)}`)
  const answer = JSON.parse(text) as { status: string; data: { result: { value: [number, string] }[] } }
  if (answer.status !== 'success') throw new Error(`query ${expression} failed: ${text}`)
  const [sample] = answer.data.result
  return sample === undefined ? undefined : Number(sample.value[1])
}

t.test('prometheus scrapes the joins and the tunnel from every role', async (t) => {
  const diag = { auth: `127.0.0.1:${await freePort()}`, proxy: `127.0.0.1:${await freePort()}`, node: `127.0.0.1:${await freePort()}` }
  const auth = await new AuthProcess({ diagAddr: diag.auth }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, diagAddr: diag.proxy }).start()
  t.teardown(() => proxy.stop())

  // A join refused for its token, then the node's own join, through the proxy.
  const refused = startNode([`--auth-server=${proxy.web}`, '--token=not-a-token-of-this-cluster', `--ca-pin=${pin}`, '--nodename=stranger', `--data-dir=${tempDir()}`])
  t.not(await refused.exited, 0, 'a node with a wrong token does not join')
  const node = startNode([
    `--auth-server=${proxy.web}`,
    `--token=${await auth.token()}`,
    `--ca-pin=${pin}`,
    '--nodename=watched',
    `--data-dir=${tempDir()}`,
    `--diag-addr=${diag.node}`,
  ])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'watched').catch((error) => {
    throw new Error(`${error.message}\n${node.stderr}`)
  })
  const proxyId = (await proxy.daemon.status()).proxy!.proxy_id
  // A user's session through the proxy and the tunnel, with a user certificate issued for it.
  const profile = await signUser(auth, proxy.web)
  const session = await openssh(profile, [`${testLogin()}@watched`, 'echo relayed'])
  t.equal(session.code, 0, `an ssh session through the tunnel ${session.stderr}`)

  for (const [role, address] of Object.entries(diag)) {
    const metrics = await get(address, '/metrics')
    t.equal(metrics.status, 200, `${role}: /metrics answers`)
    t.match(metrics.text, /^warren_build_info\{version="0\.1\.0",commit="[^"]+"\} 1$/m, `${role}: build info`)
    t.match(metrics.text, /^warren_process_resident_memory_bytes \d+/m, `${role}: process memory`)
    const check = spawnSync('promtool', ['check', 'metrics'], { input: metrics.text, encoding: 'utf8' })
    t.equal(check.status, 0, `${role}: promtool check metrics passes ${check.stdout}${check.stderr}`)
    t.equal((await get(address, '/healthz')).status, 200, `${role}: /healthz`)
  }

  const prometheus = await startPrometheus(t, { 'warren-auth': diag.auth, 'warren-proxy': diag.proxy, 'warren-node': diag.node })
  const expected: Record<string, number> = {
    'warren_auth_joins_total{job="warren-auth",result="accepted"}': 2,
    'warren_auth_joins_total{job="warren-auth",result="refused"}': 1,
    'warren_auth_certificates_issued_total{job="warren-auth",kind="host"}': 2,
    'warren_auth_certificates_issued_total{job="warren-auth",kind="user"}': 1,
    'warren_proxy_tunnels{job="warren-proxy"}': 1,
    'warren_proxy_tunnel_opens_total{job="warren-proxy"}': 1,
    'warren_proxy_live_set_proxies{job="warren-proxy"}': 1,
    'warren_node_tunnels{job="warren-node"}': 1,
    'warren_node_tunnels_wanted{job="warren-node"}': 1,
    [`warren_node_tunnel_up{job="warren-node",proxy_id="${proxyId}"}`]: 1,
    'warren_node_ssh_sessions{job="warren-node"}': 0,
    'warren_proxy_user_sessions{job="warren-proxy"}': 0,
  }
  const seen: Record<string, number | undefined> = {}
  await until(
    'prometheus to scrape the expected values',
    async () => {
      for (const expression of Object.keys(expected)) seen[expression] = await query(prometheus, expression)
      return Object.entries(expected).every(([expression, value]) => seen[expression] === value)
    },
    { timeoutMs: 30_000, everyMs: 500 },
  ).catch(() => {})
  t.same(seen, expected, 'the series have the expected values in Prometheus')
  t.ok(((await query(prometheus, 'warren_node_certificate_expiry_timestamp_seconds')) ?? 0) > Date.now() / 1000, 'the certificate expires in the future')
  for (const ca of ['host', 'user']) {
    const expires = (await query(prometheus, `warren_auth_ca_expiry_timestamp_seconds{ca="${ca}"}`)) ?? 0
    t.ok(expires > Date.now() / 1000 + 9.9 * 365 * 24 * 3600, `the ${ca} CA's certificate expires in ten years (${expires})`)
  }
  t.ok(((await query(prometheus, 'sum(warren_node_tunnel_bytes_total)')) ?? 0) > 0, 'bytes went through the tunnel')
  t.ok(((await query(prometheus, 'warren_proxy_relayed_bytes_total{direction="to_user"}')) ?? 0) > 0, "the proxy relayed the session's bytes to the user")
  t.ok(((await query(prometheus, 'warren_proxy_relayed_bytes_total{direction="to_node"}')) ?? 0) > 0, 'and from the user to the node')
  t.ok(((await query(prometheus, 'sum(warren_auth_backend_operation_duration_seconds_count)')) ?? 0) > 0, 'backend operations were timed')
  t.ok(((await query(prometheus, 'warren_auth_heartbeats_received_total{role="proxy"}')) ?? 0) > 0, "the proxy's heartbeats were counted")
})
