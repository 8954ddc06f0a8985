// A stolen device can rewrite its own config, labels included: one that joined as a lab
// device labels itself env=prod to receive prod users' sessions (the commands of `warren
// ssh root@env=prod`, an agent forwarded to it). The labels the cluster assigns (from the
// token it joined with, or `warrenctl nodes label`) win over its own of the same key: at
// every proxy, in every listing and selector, and at the node itself, which learns them
// signed by the auth server. A change of them closes the sessions already open that the
// users' roles no longer allow. Real processes and real OpenSSH; a node behind a tunnel and
// a direct node.

import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { AuthProcess, JSON_LOGS, openssh, ProxyProcess, ROOT, run, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_LOGS }).start()
t.teardown(() => proxy.stop())

const role = (env: string) => `kind: role
version: v1
metadata:
  name: ${env}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels:
      env: ${env}
`
for (const env of ['lab', 'prod']) {
  const created = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], { input: role(env) })
  if (created.code !== 0) throw new Error(`create role ${env}: ${created.stderr}`)
}

const user = (name: string, roles: string) => signUser(auth, proxy.web, name, roles)
const labUser = await user('lena', 'lab')
const prodUser = await user('paul', 'prod')

/** A device whose config says env=prod, joined with a token that assigns env=lab; its config file and process. */
async function device(name: string, direct: boolean): Promise<{ config: string; daemon: ReturnType<typeof startNode> }> {
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(config, ['version: v1', `data_dir: ${dir}`, 'labels: { env: prod, owner: thief }', 'ssh_service:', '  listen_addr: 127.0.0.1:0', JSON_LOGS].join('\n'))
  const token = await auth.token(['nodes', 'add', '--labels=env=lab'])
  const daemon = startNode([`--config=${config}`, `--auth-server=${direct ? auth.address : proxy.web}`, `--token=${token}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => daemon.stop())
  await waitForNode(auth, name)
  return { config, daemon }
}
const devices = { 'lab-tunnel': await device('lab-tunnel', false), 'lab-direct': await device('lab-direct', true) }

interface Listed {
  nodename: string
  labels: Record<string, string>
  assigned_labels?: Record<string, string>
}
const listing = async (args: string[] = []): Promise<Listed[]> => JSON.parse((await auth.ctl(['nodes', 'ls', '--format=json', ...args])).stdout) as Listed[]
const reach = (identity: string, node: string) => openssh(identity, [`${testLogin()}@${node}`, 'echo reached'])

/** Tries `check` until it holds or 15 s pass (the proxies' poll, the node's next word). */
async function eventually(check: () => Promise<boolean>): Promise<boolean> {
  for (let tries = 0; tries < 60; tries++) {
    if (await check()) return true
    await sleep(250)
  }
  return false
}

t.test("the token's labels win over the device's own in every listing", async (t) => {
  for (const node of await listing()) t.same(node.labels, { env: 'lab', owner: 'thief' }, `${node.nodename}: env as assigned, its other labels its own`)
  for (const node of await listing(['--all'])) t.same(node.assigned_labels, { env: 'lab' }, `${node.nodename}: the assigned ones shown apart`)
  const selected = JSON.parse((await auth.ctl(['nodes', 'ls', 'env=prod', '--format=json'])).stdout) as Listed[]
  t.same(selected, [], 'a selector for env=prod finds neither')
  const reachable = await warren(['ls', `--identity=${prodUser}`, '--format=json'])
  t.same(JSON.parse(reachable.stdout), [], `a prod user may reach neither (${reachable.stderr.trim()})`)
})

t.test('a prod user is refused at the proxy; a lab user reaches both, the nodes judging by the assigned label too', async (t) => {
  for (const node of ['lab-tunnel', 'lab-direct']) {
    const refused = await reach(prodUser, node)
    t.equal(refused.code, 255, `${node}: refused`)
    t.equal(refused.stdout, '')
    t.match(refused.stderr, `access to node "${node}" denied`)
    const logged = proxy.daemon.logEntries().filter((entry) => entry.access_denied === true && entry.node === node && entry.user === 'paul')
    t.equal(logged.length, 1, `${node}: the proxy logs the refusal`)
    // The node's own config says env=prod: only the assigned label lets the lab user in there.
    const reached = await reach(labUser, node)
    t.equal(reached.stdout, 'reached\n', `${node}: ${reached.stderr.trim()}`)
  }
})

t.test('an admin changes the assigned labels: proxies and nodes follow, and the change is audited', async (t) => {
  const changed = await auth.ctl(['nodes', 'label', 'lab-tunnel', 'env=prod'])
  t.equal(changed.code, 0, changed.stderr)
  const direct = await auth.ctl(['nodes', 'label', 'lab-direct', 'env=prod'])
  t.equal(direct.code, 0, direct.stderr)
  for (const node of ['lab-tunnel', 'lab-direct']) {
    t.ok(await eventually(async () => (await reach(prodUser, node)).stdout === 'reached\n'), `${node}: the prod user reaches it now`)
    const refused = await reach(labUser, node)
    t.equal(refused.code, 255, `${node}: the lab user no longer does`)
  }
  const removed = await auth.ctl(['nodes', 'label', 'lab-tunnel', '--remove=env'])
  t.equal(removed.code, 0, removed.stderr)
  const [tunnel] = (await listing(['--all'])).filter((node) => node.nodename === 'lab-tunnel')
  t.same(tunnel.assigned_labels, {}, 'none assigned any more')
  t.same(tunnel.labels, { env: 'prod', owner: 'thief' }, 'its own labels count again')
  const events = JSON.parse((await auth.ctl(['audit', 'ls', '--type=node.labels', '--format=json'])).stdout) as { node: string; assigned: string; actor: string }[]
  t.same(
    events.map((event) => [event.node, event.assigned]),
    [
      ['lab-tunnel', 'env=prod'],
      ['lab-direct', 'env=prod'],
      ['lab-tunnel', ''],
    ],
  )
  t.ok(
    events.every((event) => typeof event.actor === 'string' && event.actor !== ''),
    'each names who changed them',
  )
})

t.test('bad input changes nothing', async (t) => {
  const labelsNow = async () => (await listing(['--all'])).map((node) => [node.nodename, node.labels, node.assigned_labels])
  const before = await labelsNow()
  const unknown = await auth.ctl(['nodes', 'label', 'no-such-node', 'env=prod'])
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /no-such-node/)
  const malformed = await auth.ctl(['nodes', 'label', 'lab-direct', 'env'])
  t.equal(malformed.code, 2, 'bad usage')
  t.match(malformed.stderr, /key=value/)
  const proxyToken = await auth.ctl(['tokens', 'add', '--type=proxy', '--labels=env=lab'])
  t.equal(proxyToken.code, 2, 'a proxy token assigns no labels')
  const refused = await auth.api<unknown>('POST', '/v1/tokens', { roles: 'proxy', ttl_ms: 60_000, labels: { env: 'lab' } }).catch((error: Error) => error)
  t.match(refused, { message: /field "labels" is for tokens that grant the node role/ }, 'nor does the auth server make one')
  t.same(await labelsNow(), before, 'every node’s labels as they were')
})

/**
 * An SSH session kept open on `node` (its command sleeps), once the node's shell answered:
 * stock OpenSSH with the profile's ssh_config, or `warren ssh --fdpass` (a plain SSH stream).
 */
async function openSession(t: Test, identity: string, node: string, fdpass = false) {
  const command = ['echo up; sleep 600']
  const [file, args] = fdpass
    ? [process.execPath, [join(ROOT, 'cli/warren.ts'), 'ssh', '--fdpass', `--identity=${identity}`, `${testLogin()}@${node}`, ...command]]
    : ['ssh', ['-F', join(identity, 'ssh_config'), '-o', 'BatchMode=yes', `${testLogin()}@${node}`, ...command]]
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => child.kill('SIGKILL'))
  const ended = await Promise.race([until(() => output.includes('up\n')).then(() => false), exited.then(() => true)])
  if (ended) throw new Error(`the session to ${node} ended at once: ${output}`)
  return { exited, running: () => child.exitCode === null && child.signalCode === null }
}

/** Resolves once `check` holds (every 100 ms). */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await sleep(100)
}

/** What `promise` gives within `ms`, or 'timeout'. */
const within = <T>(promise: Promise<T>, ms: number) => Promise.race([promise, sleep(ms).then(() => 'timeout' as const)])

t.test('an admin relabels a node: the open sessions its new labels refuse are closed, the others stay open', async (t) => {
  const bothUser = await user('bea', 'lab,prod')
  for (const node of ['lab-tunnel', 'lab-direct']) {
    const assigned = await auth.ctl(['nodes', 'label', node, 'env=lab'])
    t.equal(assigned.code, 0, assigned.stderr)
    t.ok(await eventually(async () => (await reach(labUser, node)).stdout === 'reached\n'), `${node}: the lab user reaches it`)
    const lena = await openSession(t, labUser, node)
    const lenaFdpass = await openSession(t, labUser, node, true)
    const bea = await openSession(t, bothUser, node)
    const refusals = () => proxy.daemon.logEntries().filter((entry) => entry.access_denied === true && entry.user === 'lena' && entry.node === node).length
    const refusedBefore = refusals()

    const relabelled = await auth.ctl(['nodes', 'label', node, 'env=prod'])
    t.equal(relabelled.code, 0, relabelled.stderr)
    // The proxy follows within its poll of the live set (a second).
    t.equal(await within(lena.exited, 15_000), 255, `${node}: the lab user's OpenSSH session is closed`)
    t.not(await within(lenaFdpass.exited, 15_000), 'timeout', `${node}: and the one over a plain SSH stream (fdpass)`)
    t.equal(refusals() - refusedBefore, 2, `${node}: both closed by the proxy, as refusals (the node judges only logins)`)
    await sleep(1000)
    t.ok(bea.running(), `${node}: the session of a user whose roles select env=prod too stays open`)
  }
})

t.test("a node's own labels change (its config reloaded): the open sessions they no longer allow are closed", async (t) => {
  // A key no one assigned: the node's to report, as its config says (owner=thief).
  const OWNED = `kind: role
version: v1
metadata:
  name: owned
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels:
      owner: thief
`
  const created = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], { input: OWNED })
  t.equal(created.code, 0, created.stderr)
  const ownerUser = await user('olga', 'owned')
  // A direct node's word reaches proxies through the auth server; a tunnelled node's through its tunnel.
  for (const node of ['lab-direct', 'lab-tunnel'] as const) {
    const { config, daemon } = devices[node]
    t.ok(await eventually(async () => (await reach(ownerUser, node)).stdout === 'reached\n'), `${node}: the owner's user reaches it`)
    const olga = await openSession(t, ownerUser, node)
    writeFileSync(config, readFileSync(config, 'utf8').replace('owner: thief', 'owner: nobody'))
    daemon.child.kill('SIGHUP')
    t.equal(await within(olga.exited, 20_000), 255, `${node}: the session its new labels refuse is closed`)
    writeFileSync(config, readFileSync(config, 'utf8').replace('owner: nobody', 'owner: thief'))
    daemon.child.kill('SIGHUP')
  }
})
