// Commands on the fleet, with real processes: six nodes behind a proxy's tunnels (five
// labelled env=lab, one env=prod) and a person logged in with warren login whose role allows
// env=lab only. warren ls lists what the auth server says the user's certificate reaches,
// which a request cannot widen; warren ssh on a selector runs a command on every matching
// node through stock OpenSSH, each line prefixed with its node, then a summary, and its exit
// status says whether a node failed. warrenctl lists nodes and tokens by selector, as json
// or yaml, and shows nodes as resources (get nodes).

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parse, parseAllDocuments } from 'yaml'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import type { ListedToken, PresentNode } from '../shared/protocol/admin.ts'
import { USER_CERT_HEADER } from '../shared/protocol/api.ts'
import { AuthProcess, type Daemon, JSON_LOGS, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, warren } from './helpers/cluster.ts'
import { signUp } from './helpers/people.ts'
import { until } from './helpers/until.ts'

t.setTimeout(240_000)

const LAB_ROLE = { kind: 'role', version: 'v1', metadata: { name: 'lab' }, spec: { allow: { logins: ['{{internal.logins}}'], node_labels: { env: 'lab' } } } }
const LAB = ['lab-1', 'lab-2', 'lab-3', 'lab-4', 'lab-5']

const auth = await new AuthProcess({ authServiceYaml: JSON_LOGS }).start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, debug: false }).start()
t.teardown(() => proxy.stop())

// Five nodes at once, through the proxy: each keeps a reverse tunnel.
const token = await auth.token()
const nodes = new Map<string, Daemon>()
for (const [name, env] of [...LAB.map((name) => [name, 'lab']), ['prod-1', 'prod']]) {
  const node = startNode([
    `--data-dir=${tempDir()}`,
    `--auth-server=${proxy.web}`,
    `--token=${token}`,
    `--ca-pin=${pin}`,
    `--nodename=${name}`,
    `--labels=env=${env},rack=r${name.at(-1)}`,
  ])
  nodes.set(name, node)
  t.teardown(() => node.stop())
}
const present = async () => (await auth.api<{ nodes: PresentNode[] }>('GET', '/v1/nodes')).nodes
await until('six nodes with their tunnels', async () => (await present()).filter((n) => n.tunnel).length === 6, { timeoutMs: 60_000 })

// A person whose role reaches env=lab only, logged in on a machine of its own, once the
// nodes are registered (their host keys go into the login's known_hosts).
await auth.api('POST', '/v1/roles', LAB_ROLE)
const login = testLogin()
const laptop = (() => {
  const home = tempDir('warren-laptop-')
  return { HOME: home, WARREN_HOME: join(home, '.warren') }
})()
const added = await auth.ctl(['users', 'add', 'alice', `--logins=${login}`, '--roles=lab'])
const signed = await signUp([`--proxy=${proxy.web}`, `--invite=${/--invite=(\S+)/.exec(added.stdout)![1]}`, `--ca-pin=${pin}`], laptop, 'a long enough passphrase')
if (signed.code !== 0) throw new Error(`sign-up: ${signed.stderr}`)
const aliceDir = join(laptop.WARREN_HOME, 'test-cluster')

const asAlice = (args: string[]) => warren(args, { env: laptop, timeoutMs: 60_000 })

t.test('warren ls lists the nodes the role reaches, never the others', async (t) => {
  // Side by side: each is a process of its own.
  const [listed, json, yaml, prodJson, none, bad] = await Promise.all([
    asAlice(['ls']),
    asAlice(['ls', 'env=lab', '--format=json']),
    asAlice(['ls', 'env=lab,rack=r2', '--format=yaml']),
    asAlice(['ls', 'env=prod', '--format=json']),
    asAlice(['ls', 'env=prod']),
    asAlice(['ls', 'env']),
  ])
  t.equal(listed.code, 0, listed.stderr)
  const lines = listed.stdout.trimEnd().split('\n')
  t.match(lines[0], /^Node Name\s+Address\s+Labels$/)
  t.match(lines[1], /^-+ {2}-+ {2}-+$/)
  t.same(
    lines.slice(2).map((line) => line.split(/\s+/)),
    LAB.map((name) => [name, '⟵', 'Tunnel', `env=lab,rack=r${name.at(-1)}`]),
    'the five lab nodes, sorted, labels k=v sorted by key; prod-1 is not there',
  )

  t.equal(json.code, 0, json.stderr)
  const parsed = JSON.parse(json.stdout) as PresentNode[]
  t.same(
    parsed.map((n) => n.nodename),
    LAB,
  )
  t.same(Object.keys(parsed[0]), ['host_id', 'nodename', 'addr', 'tunnel', 'labels', 'last_seen'], 'every field, stable keys')

  const narrowed = parse(yaml.stdout) as PresentNode[]
  t.same(
    narrowed.map((n) => n.nodename),
    ['lab-2'],
    'several selectors must all match',
  )
  t.same(JSON.parse(prodJson.stdout), [], 'prod is not reachable, whatever the selector')
  t.equal(none.stdout, 'No nodes found.\n')
  t.equal(bad.code, 2)
  t.equal(bad.stderr, 'ERROR: invalid selector "env": use key=value or key=*, e.g. env=prod\n')

  const entry = auth.daemon.logEntries().find((e) => e.user === 'alice' && e.route === 'GET /v1/user/nodes')
  t.equal(typeof entry?.proxy, 'string', 'the auth server logs who asked, through which proxy')
})

t.test("the list is the certificate's, not the request's", async (t) => {
  // bob's roles reach every node: his certificate, offered as the header, widens nothing.
  await auth.ctl(['users', 'add', 'bob', `--logins=${login}`, '--roles=access'])
  const bobDir = tempDir('warren-user-')
  const signedBob = await auth.ctl(['auth', 'sign', '--user=bob', `--out=${bobDir}`, `--proxy=${proxy.web}`])
  t.equal(signedBob.code, 0, signedBob.stderr)
  const bobs = JSON.parse((await warren(['ls', `--identity=${bobDir}`, '--format=json'])).stdout) as PresentNode[]
  t.same(bobs.map((n) => n.nodename).sort(), [...LAB, 'prod-1'], 'a role that allows every node lists all six')

  const file = (dir: string, name: string) => readFileSync(join(dir, name), 'utf8')
  const header = { [USER_CERT_HEADER]: Buffer.from(file(bobDir, 'tls.crt').replace(/-----[^-]+-----|\s/g, ''), 'base64').toString('base64') }
  const call = async (server: string) => {
    const client = new ApiClient({ server, caPems: [file(aliceDir, 'host_ca.pem')], certPem: file(aliceDir, 'tls.crt'), keyPem: file(aliceDir, 'tls.key') })
    try {
      return await client.request<{ nodes: PresentNode[] }>('GET', '/v1/user/nodes', undefined, { headers: header })
    } catch (error) {
      if (error instanceof ApiError) return error
      throw error
    } finally {
      await client.close()
    }
  }
  const viaProxy = await call(proxy.web)
  t.notOk(viaProxy instanceof ApiError, 'the proxy answers alice')
  t.same(
    (viaProxy as { nodes: PresentNode[] }).nodes.map((n) => n.nodename),
    LAB,
    "through the proxy: alice's nodes, bob's header ignored",
  )
  const direct = await call(auth.address)
  t.ok(direct instanceof ApiError && direct.status === 403, 'to the auth server itself, a user certificate is refused')
  t.match((direct as ApiError).message, /needs a valid user certificate of cluster "test-cluster", through a proxy/)
})

t.test('warren ssh on a selector runs on every matching node: prefixed lines, a summary, the exit status', async (t) => {
  const pids = new Map([...nodes].map(([name, daemon]) => [String(daemon.child.pid), name]))
  const failing = String(nodes.get('lab-3')!.child.pid)
  // $PPID is the node's own process, which starts the session's shell: it tells nodes apart.
  const command = `echo "pid=$PPID"; echo "to stderr" >&2; test "$PPID" != ${failing} || exit 3`
  const ran = await asAlice(['ssh', '--max-parallel=2', `${login}@env=lab`, command])
  t.equal(ran.code, 1, 'a node failed: exit status 1')
  const outLines = ran.stdout.trimEnd().split('\n').sort()
  t.same(
    outLines,
    LAB.map((name) => `[${name}] pid=${[...pids].find(([, n]) => n === name)![0]}`),
    'one line from each lab node, prefixed with the name of the node that printed it',
  )
  for (const name of LAB) t.match(ran.stderr, new RegExp(`^\\[${name}\\] to stderr$`, 'm'), `${name}'s stderr line on stderr`)
  t.notMatch(ran.stdout + ran.stderr, /prod-1/, 'prod-1 ran nothing')
  const summary = ran.stderr.slice(ran.stderr.indexOf('Node Name'))
  t.equal(
    summary,
    [
      'Node Name  Result',
      '---------  ----------------------',
      'lab-1      ok (exit status 0)',
      'lab-2      ok (exit status 0)',
      'lab-3      failed (exit status 3)',
      'lab-4      ok (exit status 0)',
      'lab-5      ok (exit status 0)',
      'Failed on 1 of 5 nodes: lab-3',
      '',
    ].join('\n'),
  )

  const ok = await asAlice(['ssh', `${login}@env=lab,rack=r1`, 'echo fine'])
  t.equal(ok.code, 0, ok.stderr)
  t.equal(ok.stdout, '[lab-1] fine\n')
  t.match(ok.stderr, /Succeeded on all 1 node\.\n$/)
})

t.test('warren ssh on a selector refuses what it cannot do, and runs nothing', async (t) => {
  const interactive = await asAlice(['ssh', `${login}@env=lab`])
  t.equal(interactive.code, 2)
  t.match(interactive.stderr, /^ERROR: an interactive session needs one node/)
  const prod = await asAlice(['ssh', `${login}@env=prod`, 'echo reached'])
  t.equal(prod.code, 1)
  t.equal(prod.stderr, 'ERROR: no node you may reach matches "env=prod" ("warren ls" lists them)\n')
  t.equal(prod.stdout, '')
  const parallel = await asAlice(['ssh', '--max-parallel=0', `${login}@env=lab`, 'true'])
  t.equal(parallel.code, 2)
  t.match(parallel.stderr, /--max-parallel must be a whole number of at least 1/)
})

t.test('warrenctl lists nodes and tokens by selector, as json or yaml, and gets nodes as resources', async (t) => {
  const ctl = (args: string[]) => run(join(ROOT, 'cli/warrenctl.ts'), [...args, `--data-dir=${auth.dataDir}`])
  await auth.ctl(['tokens', 'add', '--type=proxy', '--ttl=5m'])
  const [listed, table, all, tokensYaml, signupsYaml, noneMatch, got, oneJson, missing] = await Promise.all([
    ctl(['nodes', 'ls', 'env=lab', '--format=json']),
    ctl(['nodes', 'ls', 'env=prod']),
    ctl(['nodes', 'ls', '--all', 'env=prod', '--format=json']),
    ctl(['tokens', 'ls', '--format=yaml']),
    ctl(['tokens', 'ls', 'type=signup', '--format=yaml']),
    ctl(['tokens', 'ls', 'type=auth']),
    ctl(['get', 'nodes']),
    ctl(['get', 'nodes/lab-2', '--format=json']),
    ctl(['get', 'nodes/nowhere']),
  ])
  t.equal(listed.code, 0, listed.stderr)
  t.same((JSON.parse(listed.stdout) as PresentNode[]).map((n) => n.nodename).sort(), LAB, 'the admin sees env=lab nodes')
  t.same(
    (JSON.parse(all.stdout) as { nodename: string; status: string }[]).map((n) => [n.nodename, n.status]),
    [['prod-1', 'online']],
    '--all takes selectors and formats too',
  )
  t.match(table.stdout, /^Node Name\s+Node ID\s+Address\s+Labels\n[- ]+\nprod-1\s+\S+\s+⟵ Tunnel\s+env=prod,rack=r1\n\n$/)

  const tokens = parse(tokensYaml.stdout) as ListedToken[]
  t.ok(
    tokens.some((tk) => tk.roles.includes('proxy')),
    'the proxy token is listed',
  )
  t.ok(
    tokens.every((tk) => tk.value === null),
    'no secret without --with-secrets',
  )
  const signups = parse(signupsYaml.stdout) as ListedToken[]
  t.same(
    signups.map((tk) => tk.user),
    ['bob'],
    "only bob's sign-up token is left (alice's was spent)",
  )
  t.equal(noneMatch.stdout, 'No active tokens found.\n')

  t.equal(got.code, 0, got.stderr)
  const docs = parseAllDocuments(got.stdout).map((doc) => doc.toJS()) as {
    kind: string
    version: string
    metadata: { name: string; labels: Record<string, string> }
    spec: Record<string, unknown>
  }[]
  t.equal(docs.length, 6, 'one document per node')
  const hostIds = new Map((await present()).map((n) => [n.nodename, n.host_id]))
  for (const doc of docs) {
    t.equal(doc.kind, 'node')
    t.equal(doc.version, 'v1')
    t.equal(doc.metadata.name, hostIds.get(doc.spec.hostname as string), 'metadata.name is the host ID, spec.hostname the name')
    t.equal(doc.spec.tunnel, true)
  }
  const one = JSON.parse(oneJson.stdout)
  t.same(one[0].metadata, { name: hostIds.get('lab-2'), labels: { env: 'lab', rack: 'r2' } })
  t.equal(missing.code, 1)
  t.match(missing.stderr, /node "nowhere" not found/)
})
