// The example configs in packaging/examples load as Warren loads a config, so they cannot
// drift from the schema; and a mistake made in a copy of one is reported with key and line.

import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadConfigFile, type WarrenConfig } from '../shared/config.ts'
import { ROOT, tempDir } from './helpers/cluster.ts'

const EXAMPLES = join(ROOT, 'packaging/examples')
const PIN = /^sha256:[0-9a-f]{64}$/

function load(name: string): WarrenConfig {
  return loadConfigFile(join(EXAMPLES, name))
}

/** The message of the error that loading `text` (saved as `name`) fails with. */
function loadError(name: string, text: string): string {
  const file = join(tempDir(), name)
  writeFileSync(file, text)
  try {
    loadConfigFile(file)
  } catch (error) {
    return (error as Error).message
  }
  return 'loaded without error'
}

/** The 1-based number of the first line of `text` that contains `fragment`. */
function lineOf(text: string, fragment: string): number {
  const index = text.split('\n').findIndex((line) => line.includes(fragment))
  if (index === -1) throw new Error(`no line contains ${JSON.stringify(fragment)}`)
  return index + 1
}

t.test('node.yaml: joining settings, labels and forwarded ports', async (t) => {
  const config = load('node.yaml')
  t.equal(config.nodename, 'pi-kitchen')
  t.equal(config.dataDir, '/var/lib/warren')
  t.equal(config.authToken, '/etc/warren/token')
  t.equal(config.caPins.length, 1)
  t.match(config.caPins[0], PIN)
  t.same(config.authServers, ['proxy.example.com:3080'])
  t.same(config.labels, { site: 'kitchen', arch: 'arm64' })
  t.same(config.ssh.forwardPorts, [
    { name: 'webui', addr: '127.0.0.1:8080' },
    { name: 'grafana', addr: '127.0.0.1:3000' },
  ])
  t.equal(config.ssh.portForwarding, 'declared')
  t.notOk(config.auth.enabled, 'a device runs no auth server')
  t.notOk(config.proxy.enabled, 'nor a proxy')
  t.ok(config.ssh.enabled, 'only the node role')
})

t.test('auth.yaml: static tokens and SQLite storage', async (t) => {
  const config = load('auth.yaml')
  t.ok(config.auth.enabled)
  t.notOk(config.proxy.enabled)
  t.notOk(config.ssh.enabled, 'not a node')
  t.equal(config.auth.listenAddr, '0.0.0.0:3025')
  t.same(config.auth.publicAddrs, ['auth.example.com:3025'])
  t.equal(config.auth.clusterName, 'example')
  t.same(config.auth.tokens, ['proxy:/etc/warren/proxy-token', { roles: ['node'], token: '/etc/warren/node-token', labels: { env: 'prod' } }])
  t.same(config.auth.storage, { type: 'sqlite', path: '/var/lib/warren/backend.db' })
  t.same(config.auth.joinRateLimit, { burst: 10, perMinute: 30 })
})

t.test('auth.yaml: the etcd form shown in comments loads once uncommented', async (t) => {
  const text = readFileSync(join(EXAMPLES, 'auth.yaml'), 'utf8')
  const lines = text.split('\n')
  const sqliteAt = lines.indexOf('  storage:')
  const etcdAt = lines.indexOf('  # storage:')
  t.ok(sqliteAt !== -1 && etcdAt > sqliteAt, 'the active storage block comes first, then the commented one')
  let etcdEnd = etcdAt
  while (lines[etcdEnd + 1]?.startsWith('  #   ')) etcdEnd++
  const etcd = lines.slice(etcdAt, etcdEnd + 1).map((line) => line.replace(/^ {2}# /, '  '))
  const swapped = [...lines.slice(0, sqliteAt), ...etcd, ...lines.slice(etcdEnd + 1)].join('\n')
  const file = join(tempDir(), 'auth-etcd.yaml')
  writeFileSync(file, swapped)
  const config = loadConfigFile(file)
  t.same(config.auth.storage, {
    type: 'etcd',
    peers: ['https://etcd-1.example.com:2379', 'https://etcd-2.example.com:2379'],
    prefix: '/warren',
    tls: {
      caFile: '/etc/warren/etcd-ca.pem',
      certFile: '/etc/warren/etcd-client.pem',
      keyFile: '/etc/warren/etcd-client-key.pem',
    },
  })
})

t.test('proxy.yaml: listeners, public addresses, load balancers and ACME', async (t) => {
  const config = load('proxy.yaml')
  t.ok(config.proxy.enabled)
  t.notOk(config.auth.enabled, 'the auth server runs elsewhere')
  t.notOk(config.ssh.enabled, 'not a node')
  t.equal(config.authToken, '/etc/warren/proxy-token')
  t.match(config.caPins[0], PIN)
  t.same(config.authServers, ['auth.example.com:3025'])
  t.equal(config.proxy.webListenAddr, '0.0.0.0:3080')
  t.equal(config.proxy.tunnelListenAddr, '0.0.0.0:3024')
  t.same(config.proxy.publicAddrs, ['proxy.example.com:3080'])
  t.same(config.proxy.tunnelPublicAddrs, ['proxy.example.com:3024'])
  t.same(config.proxy.trustedLoadBalancers, ['10.0.0.0/24', '192.0.2.10'])
  t.same(config.proxy.acme, { enabled: false, email: 'admin@example.com', uri: 'https://acme-v02.api.letsencrypt.org/directory' })
})

const haproxy = spawnSync('haproxy', ['-v']).status === 0 ? false : 'HAProxy is not installed (apt-get install haproxy)'

t.test('haproxy.cfg: HAProxy accepts it, and it balances the proxy.yaml ports with PROXY headers', { skip: haproxy }, async (t) => {
  const file = join(EXAMPLES, 'haproxy.cfg')
  const check = spawnSync('haproxy', ['-c', '-f', file], { encoding: 'utf8' })
  t.equal(check.status, 0, `haproxy -c: ${check.stdout}${check.stderr}`)
  const text = readFileSync(file, 'utf8')
  const proxy = load('proxy.yaml').proxy
  for (const address of [proxy.tunnelListenAddr, proxy.webListenAddr]) {
    const port = address.slice(address.lastIndexOf(':') + 1)
    t.match(text, new RegExp(`^  bind :${port}$`, 'm'), `a frontend on port ${port}`)
    t.equal(text.match(new RegExp(`^  server \\S+ \\S+:${port} send-proxy-v2 check`, 'gm'))?.length, 3, `three proxies on port ${port}, each with a PROXY header and health checks`)
  }
  t.match(text, /^backend warren_proxies_tunnel\n(?: {2}#.*\n)* {2}balance leastconn$/m, 'tunnels go to the proxy with the fewest')
})

t.test('a mistake in a copy of an example names the key and its line', async (t) => {
  const node = readFileSync(join(EXAMPLES, 'node.yaml'), 'utf8')

  const misspelt = node.replace('\nlabels:\n', '\nlables:\n')
  t.match(
    loadError('node-misspelt.yaml', misspelt),
    `node-misspelt.yaml: line ${lineOf(misspelt, 'lables:')}: unknown key "lables" in section "(top level)" (did you mean "labels"?)`,
  )

  const wrongType = node.replace('  arch: arm64', '  arch: [arm64, armhf]')
  t.match(loadError('node-wrong-type.yaml', wrongType), `node-wrong-type.yaml: line ${lineOf(wrongType, 'arch:')}: "labels.arch" must be a string`)

  const proxy = readFileSync(join(EXAMPLES, 'proxy.yaml'), 'utf8')
  const notBoolean = proxy.replace('    enabled: false', '    enabled: maybe')
  t.match(
    loadError('proxy-not-boolean.yaml', notBoolean),
    `proxy-not-boolean.yaml: line ${lineOf(notBoolean, 'enabled: maybe')}: "proxy_service.acme.enabled" must be true or false`,
  )
})

t.test('prometheus.yml and warren-alerts.yml: promtool accepts them, and the alerts fire when they should', async (t) => {
  const promtool = (args: string[]) => spawnSync('promtool', args, { cwd: EXAMPLES, encoding: 'utf8' })
  const config = promtool(['check', 'config', 'prometheus.yml'])
  t.equal(config.status, 0, `promtool check config passes ${config.stdout}${config.stderr}`)
  const rules = promtool(['check', 'rules', 'warren-alerts.yml'])
  t.equal(rules.status, 0, `promtool check rules passes ${rules.stdout}${rules.stderr}`)

  // promtool's rule tests: series over time in, the alerts firing at a given time out.
  const node = 'job="warren-node",instance="pi:3000"'
  const proxy = 'job="warren-proxy",instance="proxy:3000"'
  const day = 86400
  // An alert as it fires: its labels and its annotations as the rule renders them.
  const fired = (labels: Record<string, string>, summary: string, description: string) => [{ exp_labels: labels, exp_annotations: { summary, description } }]
  const offline = fired(
    { severity: 'warning', job: 'warren-node', instance: 'pi:3000' },
    'Warren node pi:3000 is offline',
    'It has been unreachable or without a tunnel for 5 minutes: check its network and `warren status` on the device.',
  )
  const expiring = fired(
    { severity: 'warning', job: 'warren-node', instance: 'pi:3000' },
    'Warren node pi:3000: certificate expires within 7 days',
    'Its host certificate expires in 2d 23h 45m 0s; look for failed renewals in its log.',
  )
  const saturated = fired(
    { severity: 'critical', job: 'warren-proxy', instance: 'proxy:3000' },
    'Warren proxy proxy:3000: handshake queue saturated',
    'New tunnels and users wait or are refused; add proxies or look for a flood from few addresses.',
  )
  const cases = {
    rule_files: [join(EXAMPLES, 'warren-alerts.yml')],
    evaluation_interval: '1m',
    tests: [
      {
        interval: '1m',
        input_series: [
          { series: `up{${node}}`, values: '1x20' },
          { series: `warren_node_tunnels{${node}}`, values: '1 1 0x18' },
          { series: `warren_node_tunnels_wanted{${node}}`, values: '1x20' },
          // 3 days left at time 0 (time() starts at 0 in these tests).
          { series: `warren_node_certificate_expiry_timestamp_seconds{${node}}`, values: `${3 * day}x20` },
          { series: `warren_proxy_handshakes_queued{${proxy}}`, values: '0 0 2000x18' },
          { series: `warren_proxy_handshake_queue_capacity{${proxy}}`, values: '2048x20' },
          { series: `warren_proxy_handshake_queue_full_total{${proxy}}`, values: '0x20' },
        ],
        alert_rule_test: [
          { eval_time: '1m', alertname: 'WarrenNodeOffline', exp_alerts: [] },
          { eval_time: '10m', alertname: 'WarrenNodeOffline', exp_alerts: offline },
          { eval_time: '5m', alertname: 'WarrenCertificateExpiringSoon', exp_alerts: [] },
          { eval_time: '15m', alertname: 'WarrenCertificateExpiringSoon', exp_alerts: expiring },
          { eval_time: '2m', alertname: 'WarrenProxyHandshakeQueueSaturated', exp_alerts: [] },
          { eval_time: '6m', alertname: 'WarrenProxyHandshakeQueueSaturated', exp_alerts: saturated },
        ],
      },
      {
        // A healthy node and proxy: a tunnel held, a month left, an empty queue.
        interval: '1m',
        input_series: [
          { series: `up{${node}}`, values: '1x20' },
          { series: `warren_node_tunnels{${node}}`, values: '1x20' },
          { series: `warren_node_tunnels_wanted{${node}}`, values: '1x20' },
          { series: `warren_node_certificate_expiry_timestamp_seconds{${node}}`, values: `${30 * day}x20` },
          { series: `warren_proxy_handshakes_queued{${proxy}}`, values: '3x20' },
          { series: `warren_proxy_handshake_queue_capacity{${proxy}}`, values: '2048x20' },
          { series: `warren_proxy_handshake_queue_full_total{${proxy}}`, values: '0x20' },
        ],
        alert_rule_test: ['WarrenNodeOffline', 'WarrenCertificateExpiringSoon', 'WarrenProxyHandshakeQueueSaturated'].map((alertname) => ({
          eval_time: '15m',
          alertname,
          exp_alerts: [],
        })),
      },
    ],
  }
  const file = join(tempDir(), 'alerts.test.yml')
  writeFileSync(file, JSON.stringify(cases))
  const tested = promtool(['test', 'rules', file])
  t.equal(tested.status, 0, `promtool test rules passes ${tested.stdout}${tested.stderr}`)
})
