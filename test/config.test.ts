// The node's YAML config: keys mirror the flags, flags override the file, and a bad file is
// refused with the key and line. Also: auth and node roles in one process.

import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { AuthProcess, ctl, Daemon, startNode, tempDir, waitForNode, warren } from './helpers/cluster.ts'

const auth = new AuthProcess()
t.before(() => auth.start())
t.teardown(() => auth.stop())

t.test('a node joins from its config file; flags override the file', async (t) => {
  const dir = tempDir()
  const tokenFile = join(dir, 'token')
  writeFileSync(tokenFile, (await auth.token()) + '\n', { mode: 0o600 })
  const config = join(dir, 'warren.yaml')
  writeFileSync(
    config,
    [
      'version: v1',
      `data_dir: ${join(dir, 'data')}`,
      'nodename: from-file',
      `auth_token: ${tokenFile}`,
      `ca_pin: ${await auth.pin()}`,
      `auth_servers: ["${auth.address}"]`,
      'labels:',
      '  distro: debian',
      '  rack: r1',
      'ssh_service:',
      '  listen_addr: 127.0.0.1:0',
    ].join('\n'),
  )
  const node = startNode([`--config=${config}`, '--nodename=from-flag', '--labels=rack=r2'])
  t.teardown(() => node.stop())
  const listing = await waitForNode(auth, 'from-flag')
  t.match(listing, /^from-flag\s+\S+\s+\S+\s+distro=debian,rack=r2$/m, 'file labels, with the flag winning per key')
  t.notMatch(listing, /^from-file\s/m)
  t.ok(existsSync(join(dir, 'data', 'identity', 'identity.json')), 'data_dir from the file')
})

t.test('bad config files are refused with the key and line, and nothing starts', async (t) => {
  const dir = tempDir()
  const cases: [string, RegExp][] = [
    ['version: v1\nnodename: [unclosed\n', /line \d+: invalid YAML/],
    ['version: v1\nnodename: a\nauth_servr: ["x:1"]\n', /line 3: unknown key "auth_servr"/],
    ['version: v1\nlabels:\n  distro: [1, 2]\n', /line 3: "labels\.distro" must be a string/],
  ]
  for (const [text, expected] of cases) {
    const file = join(dir, `bad-${cases.findIndex((c) => c[0] === text)}.yaml`)
    writeFileSync(file, text)
    const result = await warren(['start', '--roles=node', `--config=${file}`, `--data-dir=${join(dir, 'data')}`])
    t.not(result.code, 0)
    t.match(result.stderr, expected)
    t.match(result.stderr, file, 'the message names the file')
  }
  t.notOk(existsSync(join(dir, 'data')), 'no data dir was created')
})

t.test('auth and node roles in one process', async (t) => {
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(
    config,
    `version: v1\ndata_dir: ${dir}\nnodename: all-in-one\nlabels: { role: both }\nauth_service:\n  listen_addr: 127.0.0.1:0\n  cluster_name: solo\nssh_service:\n  listen_addr: 127.0.0.1:0\n`,
  )
  const both = new Daemon(['start', '--roles=auth,node', `--config=${config}`])
  t.teardown(() => both.stop())
  const identity = join(dir, 'admin', 'identity.json')
  await both.waitFor('the auth server', () => existsSync(identity))
  t.match(await waitForNode({ ctl: (args) => ctl(dir, args) }, 'all-in-one'), /^all-in-one\s+\S+\s+\S+\s+role=both$/m)
})

t.test('without --roles, the *_service.enabled keys choose the roles, as in Teleport', async (t) => {
  const dir = tempDir()
  const configWith = (ssh: string) => {
    const file = join(dir, `${ssh.replace(/\W+/g, '-')}.yaml`)
    writeFileSync(
      file,
      `version: v1\ndata_dir: ${dir}\nnodename: chosen\nlog: { format: json }\nauth_service:\n  listen_addr: 127.0.0.1:0\n  cluster_name: roles\nssh_service: { ${ssh} }\n`,
    )
    return file
  }
  /** The roles `warren start` says it runs, from its JSON log. */
  const startedRoles = (stderr: string) =>
    stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line))
      .find((entry) => 'roles' in entry)?.roles

  const both = new Daemon(['start', `--config=${configWith('listen_addr: "127.0.0.1:0"')}`])
  t.teardown(() => both.stop())
  await both.waitFor('the auth server', () => existsSync(join(dir, 'admin', 'identity.json')))
  t.equal(startedRoles(both.stderr), 'auth,node', 'auth_service written, ssh_service on by default')
  await waitForNode({ ctl: (args) => ctl(dir, args) }, 'chosen')
  await both.stop()

  const authOnly = new Daemon(['start', `--config=${configWith('enabled: false')}`])
  t.teardown(() => authOnly.stop())
  await authOnly.waitFor('the start line', () => startedRoles(authOnly.stderr) !== undefined)
  t.equal(startedRoles(authOnly.stderr), 'auth', 'ssh_service.enabled: false starts no node role')
  await authOnly.stop()

  const flagWins = new Daemon(['start', '--roles=auth', `--config=${configWith('listen_addr: "127.0.0.1:0"')}`])
  t.teardown(() => flagWins.stop())
  await flagWins.waitFor('the start line', () => startedRoles(flagWins.stderr) !== undefined)
  t.equal(startedRoles(flagWins.stderr), 'auth', '--roles without node starts no node role')
  await flagWins.stop()

  const proxyFile = join(dir, 'proxy.yaml')
  writeFileSync(
    proxyFile,
    [
      'version: v1',
      `data_dir: ${join(dir, 'proxy')}`,
      'nodename: chosen-proxy',
      'log: { format: json }',
      `auth_servers: ["${auth.address}"]`,
      `auth_token: ${await auth.token(['tokens', 'add', '--type=proxy'])}`,
      `ca_pin: ${await auth.pin()}`,
      'proxy_service:',
      '  web_listen_addr: 127.0.0.1:0',
      '  tunnel_listen_addr: 127.0.0.1:0',
      'ssh_service: { enabled: false }',
    ].join('\n'),
  )
  const proxyOnly = new Daemon(['start', `--config=${proxyFile}`])
  t.teardown(() => proxyOnly.stop())
  const status = await proxyOnly.waitForStatus('the proxy to listen', (status) => status.proxy !== undefined)
  t.same(status.process.roles, ['proxy'], 'proxy_service written starts the proxy; ssh_service.enabled: false no node')
  await proxyOnly.stop()

  const none = join(dir, 'none.yaml')
  writeFileSync(none, `version: v1\ndata_dir: ${join(dir, 'none')}\nssh_service: { enabled: false }\n`)
  const nothing = await warren(['start', `--config=${none}`])
  t.equal(nothing.code, 2)
  t.match(nothing.stderr, 'no role to run: auth_service, proxy_service and ssh_service are all disabled')
  t.notOk(existsSync(join(dir, 'none')), 'no data dir was created')
})

t.test('a cluster_name other than the one the backend holds is said to be ignored', async (t) => {
  const first = await new AuthProcess({ clusterName: 'kept-name' }).start()
  await first.stop()
  const renamed = await new AuthProcess({ dataDir: first.dataDir, clusterName: 'other-name', env: { WARREN_LOG_FORMAT: 'json' } }).start()
  t.teardown(() => renamed.stop())
  t.match((await renamed.ctl(['status'])).stdout, /^Cluster\s+kept-name$/m, 'the cluster keeps its name')
  t.match(
    renamed.daemon.logEntries().filter((entry) => entry.ignored_setting !== undefined),
    [{ level: 'warn', ignored_setting: 'auth_service.cluster_name', configured: 'other-name', in_use: 'kept-name' }],
  )
})
