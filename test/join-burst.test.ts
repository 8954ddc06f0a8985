// A fleet booting behind one NAT address: its joins share that address's tries
// (auth/rate-limit.ts: joins in flight draw on them, failed ones keep them), so the auth
// server may answer a node with 429 and a time to wait. Real `warren start` processes must
// wait as told and join, not fail and exit.

import t from 'tap'
import { joinCluster } from '../shared/join.ts'
import { AuthProcess, startNode, tempDir, waitForNode } from './helpers/cluster.ts'

const NODES = 3

t.test('nodes refused with 429 at their join wait as told, and all join', { timeout: 120_000 }, async (t) => {
  // One try, and one more every 10 s: the nodes, started at once, ask well within that even
  // on a loaded machine (at every 5 s, a run beside other tests saw all three start later).
  const auth = await new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 1, per_minute: 6 }' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const token = await auth.token(['nodes', 'add', '--ttl=10m'])
  // A guess with a wrong token takes the address's one try: the nodes start with none left.
  await t.rejects(joinCluster({ authServer: auth.address, token: 'wrong-token-0123456789abcdef', caPins: [pin], nodename: 'guesser', roles: ['node'] }), /token/)
  const nodes = Array.from({ length: NODES }, (_, i) => {
    const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${auth.address}`, `--token=${token}`, `--ca-pin=${pin}`, `--nodename=burst-${i}`], {
      WARREN_LOG_FORMAT: 'json',
    })
    t.teardown(() => node.stop())
    return node
  })
  for (let i = 0; i < NODES; i++) await waitForNode(auth, `burst-${i}`, 90_000)
  t.ok(
    nodes.every((node) => node.running),
    'every node is running',
  )
  const waited = nodes.filter((node) => node.logEntries().some((entry) => typeof entry.retry_in_ms === 'number'))
  t.ok(waited.length >= 1, `${waited.length} node(s) were told to wait, and waited`)
})
