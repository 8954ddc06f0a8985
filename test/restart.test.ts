// Restarts lose nothing: the auth server (even after SIGKILL) keeps its CAs, tokens and
// nodes; a node keeps its identity and needs no token the second time.

import t from 'tap'
import { AuthProcess, freePort, startNode, tempDir, waitForNode } from './helpers/cluster.ts'

t.test('auth server restart after SIGKILL keeps the pin, tokens and nodes; a node restarts without a token', async (t) => {
  const port = await freePort()
  const auth = new AuthProcess({ port })
  await auth.start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const token = await auth.token(['nodes', 'add', '--ttl=1h'])
  const nodeDir = tempDir()
  const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${auth.address}`, `--token=${token}`, `--ca-pin=${pin}`, '--nodename=survivor'])
  const firstListing = await waitForNode(auth, 'survivor')
  const hostId = /^survivor\s+(\S+)/m.exec(firstListing)![1]
  const tokensBefore = (await auth.ctl(['tokens', 'ls'])).stdout
    .split('\n')
    .filter((l) => /^[0-9a-f]{12}\s/.test(l))
    .map((l) => l.split(/\s+/)[0])

  await auth.stop('SIGKILL')
  const restarted = new AuthProcess({ port, dataDir: auth.dataDir })
  await restarted.start()
  t.teardown(() => restarted.stop())
  t.equal(await restarted.pin(), pin, 'the CA pin is unchanged')
  const tokensAfter = (await restarted.ctl(['tokens', 'ls'])).stdout
  for (const id of tokensBefore) t.match(tokensAfter, new RegExp(`^${id}\\s`, 'm'), `token ${id} survived`)
  const restartedAt = Date.now()
  await node.waitFor(
    'a heartbeat after the restart',
    async () => {
      const { nodes } = await restarted.api<{ nodes: { host_id: string; last_seen: number }[] }>('GET', '/v1/nodes')
      return nodes.some((n) => n.host_id === hostId && n.last_seen > restartedAt)
    },
    15_000,
  )
  t.pass('the node heartbeats again under its host ID: its registration survived')

  await node.stop()
  const again = startNode([`--data-dir=${nodeDir}`])
  t.teardown(() => again.stop())
  const reused = await again.waitForStatus('the node to heartbeat with its stored identity', (status) => (status.node?.direct?.heartbeats.ok ?? 0) >= 1)
  t.equal(reused.node!.host_id, hostId, 'same host ID after the node restarts')
  t.equal(reused.node!.direct!.heartbeats.failed, 0)
  t.match(await waitForNode(restarted, 'survivor'), new RegExp(`^survivor\\s+${hostId}\\s`, 'm'), 'and so nodes ls shows it')
  t.notMatch(again.stderr, /ERROR/)

  // The token is still valid after the crash: a second node joins with it.
  const second = startNode([`--data-dir=${tempDir()}`, `--auth-server=${restarted.address}`, `--token=${token}`, `--ca-pin=${pin}`, '--nodename=second'])
  t.teardown(() => second.stop())
  await waitForNode(restarted, 'second')
})
