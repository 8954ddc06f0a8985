// A device's own labels are its own to report, and a stolen device can report any. Where the
// cluster keeps a key for assignments (`auth_service.assigned_label_keys: [env]`), a node
// carries that key only as assigned: one that joined with a token assigning nothing and
// labels itself env=prod is no prod node to the cluster, and the prod user whose role
// selects env=prod is never sent to it, nor is one whose role takes any env. Real processes
// and real OpenSSH; a node behind a tunnel and a direct node.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { AuthProcess, JSON_LOGS, openssh, ProxyProcess, ROOT, run, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'

const auth = await new AuthProcess({ authServiceYaml: '  assigned_label_keys: [env]' }).start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_LOGS }).start()
t.teardown(() => proxy.stop())

const role = (name: string, env: string) => `kind: role
version: v1
metadata:
  name: ${name}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels:
      env: "${env}"
`
for (const [name, env] of [
  ['prod', 'prod'],
  ['any-env', '*'],
]) {
  const created = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], { input: role(name, env) })
  if (created.code !== 0) throw new Error(`create role ${name}: ${created.stderr}`)
}
const prodUser = await signUser(auth, proxy.web, 'paul', 'prod')
const anyEnvUser = await signUser(auth, proxy.web, 'ana', 'any-env')
const accessUser = await signUser(auth, proxy.web, 'lena', 'access')

/** A device whose config says env=prod, joined with a token that assigns nothing. */
async function device(name: string, direct: boolean): Promise<void> {
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(config, ['version: v1', `data_dir: ${dir}`, 'labels: { env: prod, room: "2" }', 'ssh_service:', '  listen_addr: 127.0.0.1:0'].join('\n'))
  const daemon = startNode([`--config=${config}`, `--auth-server=${direct ? auth.address : proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => daemon.stop())
  await waitForNode(auth, name)
}
const NODES = ['self-direct', 'self-tunnel']
await device('self-tunnel', false)
await device('self-direct', true)

interface Listed {
  nodename: string
  labels: Record<string, string>
}
const listing = async (args: string[] = []): Promise<Listed[]> => JSON.parse((await auth.ctl(['nodes', 'ls', '--format=json', ...args])).stdout) as Listed[]
const reach = (identity: string, node: string) => openssh(identity, [`${testLogin()}@${node}`, 'echo reached'])

t.test("a key kept for assignments is none of the node's own to report, in any listing or selector", async (t) => {
  const listed = await listing()
  t.same(listed.map((node) => node.nodename).sort(), NODES)
  for (const node of listed) t.same(node.labels, { room: '2' }, `${node.nodename}: its own env is dropped, its other labels stay`)
  t.same(await listing(['env=prod']), [], 'a selector for env=prod finds neither')
  for (const identity of [prodUser, anyEnvUser]) {
    const reachable = await warren(['ls', `--identity=${identity}`, '--format=json'])
    t.same(JSON.parse(reachable.stdout), [], `a user whose role selects by env may reach neither (${reachable.stderr.trim()})`)
  }
})

t.test('a user whose role selects by env is refused at the proxy; one whose role does not reaches both', async (t) => {
  for (const node of NODES) {
    for (const [user, identity] of [
      ['paul', prodUser],
      ['ana', anyEnvUser],
    ]) {
      const refused = await reach(identity, node)
      t.equal(refused.stdout, '', `${node}: ${user} does not reach the device that calls itself prod`)
      t.equal(refused.code, 255, `${node}: ${user}'s ssh fails`)
      const logged = proxy.daemon.logEntries().filter((entry) => entry.access_denied === true && entry.node === node && entry.user === user)
      t.equal(logged.length, 1, `${node}: the proxy logs ${user}'s refusal`)
    }
    const reached = await reach(accessUser, node)
    t.equal(reached.stdout, 'reached\n', `${node}: ${reached.stderr.trim()}`)
  }
})

t.test('once an admin assigns env=prod, the prod user reaches the node', async (t) => {
  const labelled = await auth.ctl(['nodes', 'label', 'self-tunnel', 'env=prod'])
  t.equal(labelled.code, 0, labelled.stderr)
  let reached = ''
  for (let tries = 0; tries < 60 && reached !== 'reached\n'; tries++) {
    reached = (await reach(prodUser, 'self-tunnel')).stdout
    if (reached !== 'reached\n') await sleep(250)
  }
  t.equal(reached, 'reached\n', 'within 15 s of the change')
  t.same(
    (await listing(['env=prod'])).map((node) => node.nodename),
    ['self-tunnel'],
    'and selectors find it',
  )
  const other = await reach(prodUser, 'self-direct')
  t.equal(other.code, 255, 'the node still unassigned stays out of reach')
})
