// One address opening connections to the auth server's port and keeping them (TLS without a
// certificate, a health request now and then to keep each alive): each would hold its TLS
// and HTTP state for as long as the attacker likes. A real auth server keeps at most
// maxOpenPerAddress from one address (shared/tls-gate/config.ts), closes the next at once,
// and serves other addresses and the connections it holds meanwhile. Counts from its status.

import { Agent } from 'node:https'
import t from 'tap'
import { defaultGateConfig } from '../shared/tls-gate/config.ts'
import { AuthProcess } from './helpers/cluster.ts'
import { healthStatus } from './helpers/health.ts'

t.setTimeout(120_000)

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const at = auth.address.lastIndexOf(':')
const port = Number(auth.address.slice(at + 1))

/** GET /v1/health from `localAddress`: the status code, or the error's code. */
const health = (localAddress: string, agent: Agent | false = false) => healthStatus('127.0.0.1', port, { localAddress, agent })

t.test('one address holds no more than its share of connections; others are served', async (t) => {
  const most = defaultGateConfig.maxOpenPerAddress
  const attacker = new Agent({ keepAlive: true, maxSockets: most, maxFreeSockets: most })
  t.teardown(() => attacker.destroy())
  const held = await Promise.all(Array.from({ length: most }, () => health('127.0.0.9', attacker)))
  t.same(new Set(held), new Set([200]), `${most} connections from one address, each answered and kept`)
  t.equal(await health('127.0.0.9'), 'ECONNRESET', 'one more from that address is closed at once')
  const status = await auth.daemon.waitForStatus('the closed one to be counted', (status) => (status.auth?.handshake_gate.open_per_address_closed ?? 0) >= 1)
  t.equal(status.auth!.handshake_gate.open_per_address_closed, 1)
  t.equal(await health('127.0.0.10'), 200, 'another address is served')
  t.equal(await health('127.0.0.9', attacker), 200, 'and the connections held still are')
})
