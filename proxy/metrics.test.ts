// The proxy's series as prom-client writes them: read from the proxy's state at each scrape,
// counters that never go down, reasons reported at 0 before they happen, and an exposition
// that Prometheus's own lint accepts.

import { spawnSync } from 'node:child_process'
import t from 'tap'
import { DiagServer } from '../shared/diag-server.ts'
import { createLogger } from '../shared/log.ts'
import { watchProxy } from './metrics.ts'
import type { ProxyService } from './proxy.ts'

t.test("the proxy's state at each scrape", async (t) => {
  const state = {
    size: 3,
    counts: { opened: 5, declined: { certificate: 2 } as Record<string, number>, closed: {} as Record<string, number> },
    capacity: undefined as number | undefined,
    relayed: { fromUsers: 10, toUsers: 20 },
  }
  const proxy = {
    get tunnels() {
      return { size: state.size, counts: state.counts, liveSet: ['p1', 'p2'] }
    },
    get handshakeGate() {
      return { handshaking: 1, queued: 0, queueFullClosed: 0 }
    },
    get handshakeQueueCapacity() {
      return state.capacity
    },
    get userGateway() {
      return { sessions: 4, relayedBytes: () => state.relayed }
    },
  } as unknown as ProxyService
  const diag = new DiagServer({ address: '127.0.0.1:0', version: 'test', commit: 'test', log: createLogger('test', { level: 'error' }) })
  watchProxy(diag, proxy)

  let text = await diag.registry.metrics()
  const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  t.equal(lint.status, 0, `promtool check metrics passes ${lint.stdout}${lint.stderr}`)
  t.match(text, /^warren_proxy_tunnels 3$/m)
  t.match(text, /^warren_proxy_tunnel_opens_total 5$/m)
  t.match(text, /^warren_proxy_tunnel_declines_total\{reason="certificate"\} 2$/m)
  t.match(text, /^warren_proxy_tunnel_declines_total\{reason="no_hello"\} 0$/m, 'a reason is reported before it happens')
  t.match(text, /^warren_proxy_tunnel_closes_total\{reason="replaced"\} 0$/m)
  t.match(text, /^warren_proxy_relayed_bytes_total\{direction="to_user"\} 20$/m)
  t.match(text, /^warren_proxy_live_set_proxies 2$/m)
  t.match(text, /^warren_proxy_user_sessions 4$/m)

  state.size = 2
  state.counts = { opened: 7, declined: { certificate: 1 }, closed: { replaced: 1 } }
  state.capacity = 2048
  text = await diag.registry.metrics()
  t.match(text, /^warren_proxy_tunnels 2$/m, 'a gauge follows the state')
  t.match(text, /^warren_proxy_tunnel_opens_total 7$/m, 'a counter follows the total')
  t.match(text, /^warren_proxy_tunnel_closes_total\{reason="replaced"\} 1$/m)
  t.match(text, /^warren_proxy_tunnel_declines_total\{reason="certificate"\} 2$/m, 'a total read lower than before is not reported lower')
  t.match(text, /^warren_proxy_handshake_queue_capacity 2048$/m, 'a gauge once it is known')
})
