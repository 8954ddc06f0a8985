// Two auth servers (real processes) on one real etcd, whose configs disagree on
// `auth_service.assigned_label_keys`: A keeps env for assignments, B's config forgot it. A
// proxy of B's, and a device behind its tunnel that labels itself env=prod with a token that
// assigns nothing. Were B to judge by its own list, the prod user would reach that device
// through B's proxy. Every live auth server keeps the keys any of them lists: B refuses the
// prod user too, lists the device without env, and both servers' status names the other's
// list; once A stops, its keys leave B's.

import { join } from 'node:path'
import t from 'tap'
import type { AssignedLabelKeysStatus } from '../shared/status.ts'
import { AuthProcess, JSON_LOGS, openssh, ProxyProcess, ROOT, run, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'
import { until } from './helpers/until.ts'

t.setTimeout(180_000)

const unavailable = etcdUnavailable()
if (unavailable) {
  t.plan(0, unavailable)
} else {
  const etcd = await EtcdServer.start()
  t.teardown(() => etcd.stop())
  const storage = `  storage: { type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${uniquePrefix('ha-assigned-keys')}" }`
  const a = await new AuthProcess({ authServiceYaml: [storage, '  assigned_label_keys: [env]', JSON_LOGS].join('\n') }).start()
  t.teardown(() => a.stop())
  const b = await new AuthProcess({ authServiceYaml: [storage, JSON_LOGS].join('\n') }).start()
  t.teardown(() => b.stop())
  const pin = await b.pin()
  const proxy = await new ProxyProcess({ auth: b, token: await b.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_LOGS }).start()
  t.teardown(() => proxy.stop())

  const role = 'kind: role\nversion: v1\nmetadata:\n  name: prod\nspec:\n  allow:\n    logins: ["{{internal.logins}}"]\n    node_labels:\n      env: prod\n'
  const created = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${b.dataDir}`], { input: role })
  if (created.code !== 0) throw new Error(`create role prod: ${created.stderr}`)
  const prodUser = await signUser(b, proxy.web, 'paul', 'prod')

  const dir = tempDir()
  const device = startNode([`--data-dir=${dir}`, `--auth-server=${proxy.web}`, `--token=${await b.token()}`, `--ca-pin=${pin}`, '--nodename=self-prod', '--labels=env=prod,room=2'])
  t.teardown(() => device.stop())
  await waitForNode(b, 'self-prod')

  const keysOf = async (auth: AuthProcess, what: string, predicate: (keys: AssignedLabelKeysStatus) => boolean): Promise<AssignedLabelKeysStatus> =>
    (await auth.daemon.waitForStatus(what, (status) => status.auth?.assigned_label_keys !== undefined && predicate(status.auth.assigned_label_keys))).auth!.assigned_label_keys!
  const reach = () => openssh(prodUser, [`${testLogin()}@self-prod`, 'echo reached'])

  t.test("B keeps the key that only A's config lists, and says so", async (t) => {
    const ofB = await keysOf(b, 'B to see A', (keys) => keys.differing.length === 1)
    t.same(ofB.own, [], "B's own list is empty")
    t.same(ofB.effective, ['env'], 'B judges by env all the same')
    t.same(ofB.differing[0].keys, ['env'], "and names A's list")
    const ofA = await keysOf(a, 'A to see B', (keys) => keys.differing.length === 1)
    t.same([ofA.own, ofA.effective, ofA.differing[0].keys], [['env'], ['env'], []], "A names B's empty list")
    const shown = await warren(['status', `--data-dir=${b.dataDir}`])
    t.match(shown.stdout, /^Assigned keys +env, NOT the same on every auth server \(here: none; [0-9a-f]{16}: env\)/m, 'warren status shows the difference')
    const warned = b.daemon.logEntries().filter((entry) => entry.level === 'warn' && Array.isArray(entry.assigned_label_keys_differing))
    t.equal(warned.length, 1, 'B warns once that the lists differ')
  })

  t.test("through B, the device's own env counts for nothing: not listed, and the prod user is refused", async (t) => {
    const listed = JSON.parse((await b.ctl(['nodes', 'ls', '--format=json'])).stdout) as { nodename: string; labels: Record<string, string> }[]
    t.same(
      listed.map((node) => [node.nodename, node.labels]),
      [['self-prod', { room: '2' }]],
      'B lists the device without env',
    )
    const refused = await reach()
    t.equal(refused.stdout, '', 'the prod user does not reach the device that calls itself prod')
    t.equal(refused.code, 255, "the prod user's ssh fails")
    t.equal(
      proxy.daemon.logEntries().filter((entry) => entry.access_denied === true && entry.node === 'self-prod' && entry.user === 'paul').length,
      1,
      "B's proxy logs the refusal",
    )
  })

  t.test("once A stops, B judges by its own list again: the device's env is its own to report", async (t) => {
    await a.stop()
    const ofB = await keysOf(b, 'A to leave', (keys) => keys.differing.length === 0)
    t.same(ofB.effective, [], 'B keeps no key')
    let reached = ''
    await until('the prod user to reach the device', async () => {
      reached = (await reach()).stdout
      return reached === 'reached\n'
    })
    t.equal(reached, 'reached\n', 'the prod user reaches it through the same proxy')
  })
}
