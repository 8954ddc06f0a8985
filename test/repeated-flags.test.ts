// A flag that takes one value, given twice, is bad usage (exit 2, naming the flag), never
// the last one silently: `warrenctl tokens add --ttl=1h --ttl=5m` makes no token, and
// `warren start --config=a --config=b` starts nothing. Flags that take lists (--roles,
// --type, --labels) add up when repeated, and a label key given twice is refused.

import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { AuthProcess, type RunResult, tempDir, warren } from './helpers/cluster.ts'

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()

const tokens = () => auth.api<{ tokens: unknown[] }>('GET', '/v1/tokens')

function refused(t: Test, result: RunResult, message: RegExp, what: string): void {
  t.equal(result.code, 2, `${what}: exit status 2\n${result.stderr}`)
  t.match(result.stderr, new RegExp(`^ERROR: ${message.source}`), what)
  t.equal(result.stdout, '', `${what}: nothing printed on standard output`)
}

t.test('warrenctl: a one-value flag given twice makes nothing', async (t) => {
  const before = await tokens()
  const cases: [string[], RegExp][] = [
    [['tokens', 'add', '--type=node', '--ttl=1h', '--ttl=5m'], /flag --ttl is given more than once for "warrenctl tokens add": give it once/],
    [['nodes', 'add', '--ttl=5m', '--ttl', '5m'], /flag --ttl is given more than once for "warrenctl nodes add": give it once/],
    [['tokens', 'add', '--type=node', '--token=first-chosen-token-0001', '--token=second-chosen-token-02'], /flag --token is given more than once/],
    [['nodes', 'add', '--labels=env=lab', '--labels=env=prod'], /label "env" is given more than once in --labels: give each key once/],
    [['nodes', 'add', '--labels=env=lab,env=prod'], /label "env" is given more than once in --labels/],
  ]
  for (const [args, message] of cases) {
    const result = await auth.ctl(args)
    refused(t, result, message, args.join(' '))
    t.notMatch(result.stderr, /chosen-token/, 'the values are not repeated back')
  }
  t.same(await tokens(), before, 'no token was made')
})

t.test('warrenctl: list flags add up when repeated', async (t) => {
  const added = await auth.ctl(['tokens', 'add', '--type=node', '--type=proxy', '--labels=site=kitchen', '--labels=env=lab'])
  t.equal(added.code, 0, added.stderr)
  t.match(added.stdout, /^The node that joins with it is assigned the labels env=lab,site=kitchen$/m)
  t.match(added.stdout, /--roles=node,proxy/)
})

t.test('warren start: --config twice starts nothing', async (t) => {
  const dataDirs = [tempDir(), tempDir()].map((dir) => join(dir, 'data'))
  const configs = dataDirs.map((dataDir, i) => {
    const path = join(tempDir(), `node-${i}.yaml`)
    writeFileSync(path, `data_dir: ${dataDir}\nauth_servers: ["${auth.address}"]\nca_pin: ${pin}\nssh_service:\n  listen_addr: 127.0.0.1:0\n`)
    return path
  })
  const token = await auth.token()
  const nodes = async () => (await auth.api<{ nodes: unknown[] }>('GET', '/v1/nodes?all=true')).nodes
  const before = await nodes()
  const result = await warren(['start', `--config=${configs[0]}`, `--config=${configs[1]}`, `--token=${token}`], { timeoutMs: 20_000 })
  refused(t, result, /flag --config is given more than once for "warren start": give it once/, 'warren start --config twice')
  for (const dir of dataDirs) t.notOk(existsSync(dir), `${dir} not created`)
  t.same(await nodes(), before, 'no node joined')

  const twice = await warren([
    'start',
    '--roles=node',
    `--data-dir=${dataDirs[0]}`,
    `--data-dir=${dataDirs[1]}`,
    `--auth-server=${auth.address}`,
    `--token=${token}`,
    `--ca-pin=${pin}`,
  ])
  refused(t, twice, /flag --data-dir is given more than once for "warren start"/, 'warren start --data-dir twice')
  for (const dir of dataDirs) t.notOk(existsSync(dir), `${dir} not created`)
})

t.test('warren install: --prefix twice writes nothing', async (t) => {
  const roots = [join(tempDir(), 'a'), join(tempDir(), 'b')]
  const result = await warren(['install', `--prefix=${roots[0]}`, `--prefix=${roots[1]}`, `--token=${'t'.repeat(32)}`, `--auth-server=${auth.address}`, `--ca-pin=${pin}`])
  refused(t, result, /flag --prefix is given more than once for "warren install": give it once/, 'warren install --prefix twice')
  for (const root of roots) t.notOk(existsSync(root), `${root} not created`)
})
