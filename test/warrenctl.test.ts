// Every warrenctl command: its success output, and a bad input that changes nothing.

import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { type AddressInfo, createServer } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { ApiError } from '../shared/errors.ts'
import { AuthProcess, ROOT, run, tempDir, warren } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const auth = new AuthProcess()
t.before(() => auth.start())
t.teardown(() => auth.stop())

t.test('tokens ls on a fresh cluster', async (t) => {
  const result = await auth.ctl(['tokens', 'ls'])
  t.equal(result.code, 0)
  t.equal(result.stdout, 'No active tokens found.\n')
  const bad = await auth.ctl(['tokens', 'ls', '--bogus'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /unknown flag --bogus for "warrenctl tokens ls"/)
})

t.test('status', async (t) => {
  const result = await auth.ctl(['status'])
  t.equal(result.code, 0)
  t.match(result.stdout, /^Cluster\s+test-cluster$/m)
  t.match(result.stdout, /^Version\s+\d+\.\d+\.\d+$/m)
  t.match(result.stdout, /^Host CA\s+never updated, expires \d\d \w{3} \d\d \d\d:\d\d UTC$/m)
  t.match(result.stdout, /^User CA\s+never updated, expires \d\d \w{3} \d\d /m)
  t.match(result.stdout, /^CA pin\s+sha256:[0-9a-f]{64}$/m)
  const bad = await auth.ctl(['status', 'extra'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /unexpected argument "extra"/)
})

t.test('nodes add', async (t) => {
  const pin = await auth.pin()
  const result = await auth.ctl(['nodes', 'add'])
  t.equal(result.code, 0)
  const token = /^The invite token: ([0-9a-f]{32})$/m.exec(result.stdout)?.[1]
  t.ok(token, 'a 128-bit token in hex')
  t.match(result.stdout, /^This token will expire in 30 minutes$/m)
  t.match(result.stdout, /Run this on the new node to join the cluster:/)
  // The token goes in on standard input, out of every process's command line.
  t.ok(
    result.stdout.includes(
      ['> warren start \\', '   --roles=node \\', '   --token=- \\', `   --ca-pin=${pin} \\`, `   --auth-server=${auth.address} <<'EOF'`, token, 'EOF'].join('\n'),
    ),
    `the join command reads the token from standard input:\n${result.stdout}`,
  )
  t.notMatch(result.stdout, `--token=${token}`)
  const five = await auth.ctl(['nodes', 'add', '--ttl=5m', '--roles=node,proxy'])
  t.match(five.stdout, /expire in 5 minutes/)
  t.match(five.stdout, /--roles=node,proxy/)

  const ids = async () => (await auth.ctl(['tokens', 'ls'])).stdout.split('\n').map((line) => line.split(' ')[0])
  const before = await ids()
  const bad = await auth.ctl(['nodes', 'add', '--ttl=5x'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /invalid duration "5x" for --ttl/)
  t.same(await ids(), before, 'no token was created')
})

t.test('tokens add and tokens ls', async (t) => {
  const result = await auth.ctl(['tokens', 'add', '--type=node', '--token=my-own-token-value-0001'])
  t.equal(result.code, 0)
  t.match(result.stdout, /^The invite token: my-own-token-value-0001$/m)
  t.match(result.stdout, /^This token will expire in 1 hour$/m)
  const listing = await auth.ctl(['tokens', 'ls'])
  const lines = listing.stdout.trimEnd().split('\n')
  t.match(lines[0], /^Token\s+Type\s+Expiry Time \(UTC\)$/, 'no token assigns labels: no Labels column')
  t.match(lines[1], /^-+\s+-+\s+-+$/)
  t.match(listing.stdout, /^[0-9a-f]{12}\s+node\s+\d\d [A-Z][a-z]{2} \d\d \d\d:\d\d UTC \((59m\d+s|1h0m0s)\)$/m)
  t.notMatch(listing.stdout, /my-own-token-value-0001/, 'values are masked')

  const missing = await auth.ctl(['tokens', 'add'])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /missing --type/)
  const badRole = await auth.ctl(['tokens', 'add', '--type=root'])
  t.equal(badRole.code, 2)
  t.match(badRole.stderr, /unknown role "root" for --type: use auth, proxy, node/)
  const short = await auth.ctl(['tokens', 'add', '--type=node', '--token=short'])
  t.match(short.stderr, /at least 16 characters/)
})

t.test("a token's TTL is at most 30 days: the auth server refuses more (400), warrenctl too (exit 2)", async (t) => {
  const before = await auth.api<{ tokens: unknown[] }>('GET', '/v1/tokens')
  for (const ttl_ms of [9e15, 30 * 24 * 3_600_000 + 1]) {
    const refused = await auth.api('POST', '/v1/tokens', { roles: 'node', ttl_ms }).then(
      () => undefined,
      (error: unknown) => error,
    )
    t.type(refused, ApiError)
    t.equal((refused as ApiError).status, 400)
    t.match((refused as ApiError).message, /field "ttl_ms" must be a positive number of milliseconds, at most 30 days/)
  }
  for (const args of [
    ['tokens', 'add', '--type=node', '--ttl=2500000000h'],
    ['nodes', 'add', '--ttl=721h'],
  ]) {
    const result = await auth.ctl(args)
    t.equal(result.code, 2, args.join(' '))
    t.match(result.stderr, /^ERROR: --ttl \S+ is longer than a token may live \(720h, 30 days\)/)
    t.equal(result.stdout, '')
  }
  t.same(await auth.api('GET', '/v1/tokens'), before, 'no token made')
  const longest = await auth.ctl(['tokens', 'add', '--type=node', '--ttl=720h'])
  t.equal(longest.code, 0, longest.stderr)
  t.match(longest.stdout, /^This token will expire in 720 hours$/m)
})

for (const verb of ['rm', 'del']) {
  t.test(`tokens ${verb}`, async (t) => {
    const token = await auth.token()
    const result = await auth.ctl(['tokens', verb, token])
    t.equal(result.code, 0)
    t.equal(result.stdout, `Token ${token} has been deleted\n`)
    const again = await auth.ctl(['tokens', verb, token])
    t.equal(again.code, 1)
    t.match(again.stderr, /token not found/)
    const none = await auth.ctl(['tokens', verb])
    t.equal(none.code, 2)
    t.match(none.stderr, /needs a TOKEN argument/)

    const byId = await auth.token()
    const id = /^([0-9a-f]{12})\s/m.exec((await auth.ctl(['tokens', 'ls'])).stdout)![1]
    t.equal((await auth.ctl(['tokens', verb, id])).code, 0, 'a listed ID also deletes')
    t.ok(byId)
  })
}

t.test('tokens add --labels, tokens ls and nodes label: the labels the cluster assigns', async (t) => {
  const pin = await auth.pin()
  const added = await auth.ctl(['tokens', 'add', '--type=node', '--labels=site=kitchen,env=lab'])
  t.equal(added.code, 0, added.stderr)
  const token = /^The invite token: ([0-9a-f]{32})$/m.exec(added.stdout)?.[1]
  t.match(added.stdout, /^The node that joins with it is assigned the labels env=lab,site=kitchen$/m, 'the labels, sorted by key')
  t.ok(
    added.stdout.includes(
      ['> warren start \\', '   --roles=node \\', '   --token=- \\', `   --ca-pin=${pin} \\`, `   --auth-server=${auth.address} <<'EOF'`, token, 'EOF'].join('\n'),
    ),
    `the join command as without labels:\n${added.stdout}`,
  )
  const nodesAdded = await auth.ctl(['nodes', 'add', '--labels=env=prod'])
  t.equal(nodesAdded.code, 0, nodesAdded.stderr)
  t.match(nodesAdded.stdout, /^The node that joins with it is assigned the labels env=prod$/m)
  t.notMatch((await auth.ctl(['nodes', 'add'])).stdout, /assigned/, 'no such line for a token without labels')

  const [json, yaml, table] = await Promise.all([auth.ctl(['tokens', 'ls', '--format=json']), auth.ctl(['tokens', 'ls', '--format=yaml']), auth.ctl(['tokens', 'ls'])])
  t.equal(json.code, 0, json.stderr)
  const listed = JSON.parse(json.stdout) as { labels: Record<string, string> }[]
  t.ok(
    listed.some((tk) => tk.labels.env === 'lab' && tk.labels.site === 'kitchen'),
    'json: the labels of the token',
  )
  t.ok(
    listed.every((tk) => typeof tk.labels === 'object'),
    'json: labels on every token, {} when none',
  )
  t.match(yaml.stdout, /labels:\n\s+site: kitchen\n\s+env: lab\n|labels:\n\s+env: lab\n\s+site: kitchen\n/, 'yaml: the labels')
  t.match(table.stdout, /^[0-9a-f]{12}\s+node\s+env=lab,site=kitchen\s+\d\d [A-Z][a-z]{2} \d\d \d\d:\d\d UTC /m, 'text: a Labels column')

  const unknown = await auth.ctl(['nodes', 'label', 'no-such-node', 'env=prod'])
  t.equal(unknown.code, 1, 'a node the cluster does not know: a failure, not bad usage')
  t.match(unknown.stderr, /^ERROR: .*no node "no-such-node" is registered/)
  t.equal(unknown.stdout, '')
  const malformed = await auth.ctl(['nodes', 'label', 'no-such-node', 'env'])
  t.equal(malformed.code, 2)
  t.match(malformed.stderr, /^ERROR: invalid label "env": use key=value/)
})

t.test('nodes ls', async (t) => {
  const result = await auth.ctl(['nodes', 'ls'])
  t.equal(result.code, 0)
  t.match(result.stdout, /^Node Name\s+Node ID\s+Address\s+Labels$/m)
  const bad = await auth.ctl(['nodes', 'ls', '--format=xml'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /unknown --format "xml": use text, json or yaml/)
})

t.test('unknown commands and a missing admin identity', async (t) => {
  const unknown = await auth.ctl(['frobnicate'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /unknown command "warrenctl frobnicate/)
  const noIdentity = await run(join(ROOT, 'cli/warrenctl.ts'), ['status', `--data-dir=${tempDir()}`])
  t.equal(noIdentity.code, 1)
  t.match(noIdentity.stderr, /cannot read the admin identity/)
})

t.test('away from the auth host, a mistake in the arguments is a usage error (exit 2) naming it, not a missing identity', async (t) => {
  const away = `--data-dir=${tempDir()}`
  const cases: [string[], RegExp][] = [
    [['lock', '--user=a', '--node=b'], /a lock needs exactly one target: --user=NAME or --node=NODE/],
    [['lock'], /a lock needs exactly one target/],
    [['tokens', 'ls', 'bad'], /invalid selector "bad": use key=value or key=\*/],
    [['nodes', 'ls', 'bad'], /invalid selector "bad"/],
    [['get', 'foo'], /unknown resource "foo": "warrenctl get" shows roles, nodes or nodes\/NAME/],
    [['create'], /missing -f FILE/],
    [['rm', 'roles'], /cannot remove "roles": name a role as role\/NAME/],
    [['tokens', 'add'], /missing --type/],
    [['tokens', 'add', '--type=node', '--ttl=721h'], /--ttl 721h is longer than a token may live/],
    [['tokens', 'add', '--type=proxy', '--labels=env=lab'], /--labels assigns labels to the nodes that join with the token, so the token must grant the node role \(--type=node\)/],
    [['tokens', 'add', '--type=node', '--labels=env'], /invalid label "env": use key=value, e\.g\. env=prod/],
    [['nodes', 'add', '--roles=proxy', '--labels=env=lab'], /--labels .* must grant the node role \(--roles=node\)/],
    [['nodes', 'add', '--labels=env=lab,bad key=x'], /invalid label "bad key=x"/],
    [['nodes', 'label', 'pi-1'], /nothing to change: give KEY=VALUE to assign a label, or --remove=KEY to remove one/],
    [['nodes', 'label', 'pi-1', 'env=lab', '--remove=env'], /label "env" is both assigned and removed/],
    [['nodes', 'label', 'env=lab'], /"warrenctl nodes label" needs the node first/],
    [['nodes', 'label', 'pi-1', 'env'], /invalid label "env": use key=value/],
    [['nodes', 'label', 'pi-1', '--remove=a b'], /--remove: "a b" is not a valid label name/],
    [['nodes', 'label'], /"warrenctl nodes label" needs a NODE argument/],
    [['users', 'add', 'bob'], /missing --logins/],
    [['auth', 'sign'], /missing --user/],
    [['auth', 'rotate', '--manual'], /--manual needs --phase=/],
  ]
  for (const [args, message] of cases) {
    const result = await run(join(ROOT, 'cli/warrenctl.ts'), [...args, away])
    t.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`)
    t.match(result.stderr, new RegExp(`^ERROR: ${message.source}`), args.join(' '))
  }
})

t.test('warren start: bad input', async (t) => {
  const role = await warren(['start', '--roles=bogus'])
  t.equal(role.code, 2)
  t.match(role.stderr, /unknown role "bogus" for --roles: use auth, proxy or node/)
  const pin = await warren(['start', '--roles=node', '--ca-pin=md5:abc'])
  t.equal(pin.code, 2)
  const noToken = await warren(['start', '--roles=node', `--data-dir=${tempDir()}`, `--auth-server=${auth.address}`])
  t.equal(noToken.code, 1)
  t.match(noToken.stderr, /has not joined a cluster yet: pass --token/)
  const version = await warren(['version'])
  t.match(version.stdout, /^Warren v\d+\.\d+\.\d+ node v24\./)
})

t.test('a chosen token: from standard input, out of what ps shows, and never empty', async (t) => {
  const ctlScript = join(ROOT, 'cli/warrenctl.ts')
  const chosen = 'chosen-on-standard-input-0001'
  const fromInput = await run(ctlScript, ['tokens', 'add', '--type=node', '--token=-', `--data-dir=${auth.dataDir}`], { input: `${chosen}\n` })
  t.equal(fromInput.code, 0, fromInput.stderr)
  t.match(fromInput.stdout, new RegExp(`^The invite token: ${chosen}$`, 'm'))

  const before = (await auth.ctl(['tokens', 'ls', '--format=json'])).stdout
  for (const args of [
    ['tokens', 'add', '--type=node', '--token='],
    ['nodes', 'add', '--nodename='],
    ['nodes', 'add', '--nodename=  '],
  ]) {
    const refused = await auth.ctl(args)
    t.equal(refused.code, 2, `${args.join(' ')}: a usage error`)
  }
  t.equal((await auth.ctl(['tokens', 'ls', '--format=json'])).stdout, before, 'and no token made')

  // Against an address that never answers, the command waits: what ps shows of it meanwhile.
  const silent = createServer(() => {})
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => silent.close())
  const secret = 'never-in-a-process-list-0002'
  const waiting = spawn(process.execPath, [
    ctlScript,
    'tokens',
    'add',
    '--type=node',
    `--token=${secret}`,
    `--data-dir=${auth.dataDir}`,
    `--auth-server=127.0.0.1:${(silent.address() as AddressInfo).port}`,
  ])
  t.teardown(() => waiting.kill())
  const shown = () => readFileSync(`/proc/${waiting.pid}/cmdline`, 'utf8').split('\0').join(' ')
  await until('warrenctl to hide its token', async () => shown().includes('--token=…'))
  t.notOk(shown().includes(secret), `not in ${shown()}`)
})
