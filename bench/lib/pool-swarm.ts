// Many simulated agents in one process, each running the agent's real tunnel pool
// (agent/tunnel-pool.ts over agent/tunnel.ts): it dials one load-balanced address until
// it holds a tunnel to every proxy the proxies announce, closes duplicates and backs off
// with full jitter (shared/backoff.ts), exactly as `warren start --roles=node` does. Each
// agent is a real node that joined the cluster (bulk-join.ts).
//
//   node --expose-gc pool-swarm.ts --auth=HOST:PORT --token=T --pin=sha256:.. --tunnel=HOST:PORT --name=PREFIX --proxies=N
//
// Commands on standard input, one JSON line each, answered on standard output:
//   {"join": n}              join until n identities are held   → {"joined": n, "seconds": s}
//   {"start": n, "rate": r}  start n agents, r per second        → {"started": n}
//   {"mark": 1}              count dials and completion from now → {"marked": 1}
//   {"restart": 1}           every agent stops (its tunnels close) and starts again at once, as a
//                            restarted agent process would: no session ticket kept, so a full
//                            handshake; counts from now as after a mark → {"restarted": n}
//   {"stats": 1}             → {"agents", "full", "held", "dials": [per agent since the mark], "resumed" (tunnels since the mark),
//                               "fullAt": [ms after the mark when each agent last became full, -1 if not], "rss"}
//
// An agent is "full" when it holds `--proxies` tunnels. Completion is sampled every 50 ms.

import { parseArgs } from 'node:util'
import { TunnelPool } from '../../agent/tunnel-pool.ts'
import { parseHostPort } from '../../shared/address.ts'
import { DEFAULTS } from '../../shared/config.ts'
import type { NodeIdentity } from '../../shared/identity-store.ts'
import { createLogger } from '../../shared/log.ts'
import { BulkJoiner } from './bulk-join.ts'
import { announce, exitWithParent, onCommand } from './child.ts'
import { inParallel, SWARM_OPTIONS, simulatedAgent } from './swarm.ts'

const { values } = parseArgs({
  options: {
    ...SWARM_OPTIONS,
    proxies: { type: 'string', default: '3' },
  },
})
const proxyCount = Number(values.proxies)
const tunnelAddress = parseHostPort(values.tunnel!, DEFAULTS.tunnelPort)
const log = createLogger('swarm', { level: 'error' })
const identities: NodeIdentity[] = []

interface Agent {
  pool: TunnelPool
  dialsAtMark: number
  resumedAtMark: number
  /** ms after the mark when the agent last became full; -1 while it is not. */
  fullAt: number
}
const agents: Agent[] = []
let markedAt = performance.now()

async function join(target: number): Promise<void> {
  const started = performance.now()
  const bulk = new BulkJoiner(values.auth!, values.token!)
  await bulk.connect(values.pin!)
  const joined: NodeIdentity[] = []
  await inParallel(identities.length, target, Number(values.concurrency), async (i) => {
    joined.push(await bulk.join(`${values.name}-${i}`))
  })
  await bulk.close()
  identities.push(...joined)
  globalThis.gc?.()
  announce({ joined: identities.length, seconds: (performance.now() - started) / 1000 })
}

async function start(count: number, perSecond: number): Promise<void> {
  if (count > identities.length) throw new Error(`only ${identities.length} identities joined`)
  const started = performance.now()
  for (let i = agents.length; i < count; i++) {
    const due = started + (i * 1000) / perSecond
    const wait = due - performance.now()
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait))
    const pool = new TunnelPool(simulatedAgent(tunnelAddress, identities[i]!, log))
    agents.push({ pool, dialsAtMark: 0, resumedAtMark: 0, fullAt: -1 })
    pool.start()
  }
  announce({ started: agents.length })
}

function restart(): void {
  markedAt = performance.now()
  agents.forEach((agent, i) => {
    agent.pool.stop()
    agent.pool = new TunnelPool(simulatedAgent(tunnelAddress, identities[i]!, log))
    agent.dialsAtMark = 0
    agent.resumedAtMark = 0
    agent.fullAt = -1
    agent.pool.start()
  })
  announce({ restarted: agents.length })
}

setInterval(() => {
  const now = performance.now() - markedAt
  for (const agent of agents) {
    const full = agent.pool.heldCount >= proxyCount
    if (!full) agent.fullAt = -1
    else if (agent.fullAt < 0) agent.fullAt = now
  }
}, 50)

onCommand(async (command) => {
  if (typeof command.join === 'number') await join(command.join)
  else if (typeof command.start === 'number') await start(command.start, Number(command.rate ?? 1e9))
  else if (command.restart) restart()
  else if (command.mark) {
    markedAt = performance.now()
    for (const agent of agents) {
      agent.dialsAtMark = agent.pool.dials
      agent.resumedAtMark = agent.pool.resumed
      agent.fullAt = -1
    }
    announce({ marked: 1 })
  } else if (command.stats) {
    let full = 0
    let held = 0
    for (const agent of agents) {
      const n = agent.pool.heldCount
      held += n
      if (n >= proxyCount) full++
    }
    announce({
      stats: 1,
      agents: agents.length,
      full,
      held,
      dials: agents.map((a) => a.pool.dials - a.dialsAtMark),
      resumed: agents.reduce((sum, a) => sum + a.pool.resumed - a.resumedAtMark, 0),
      fullAt: agents.map((a) => Math.round(a.fullAt)),
      rss: process.memoryUsage().rss,
    })
  }
})
process.on('SIGTERM', () => process.exit(0))
exitWithParent()
announce({ ready: true })
