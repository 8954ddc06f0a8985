// Many simulated agents in one process, for the scale benchmark. Each is a real node: it
// joins the cluster (its own keys and certificates; --join=cluster uses shared/join.ts's
// joinCluster for every node, the default a keep-alive client, see bulk-join.ts) and holds
// one reverse tunnel with agent/tunnel.ts (TLS 1.3 with its host certificate, one yamux
// session, a control stream with hello and heartbeats at the agent's default intervals).
//
//   node --expose-gc agent-swarm.ts --auth=HOST:PORT --token=T --pin=sha256:.. --tunnel=HOST:PORT --name=PREFIX [--join=bulk|cluster]
//
// Commands on standard input, one JSON line each, answered on standard output:
//   {"join": n}   join until n identities are held      → {"joined": n, "seconds": s}
//   {"open": n}   open tunnels until n are held          → {"open": n, "failed": f, "seconds": s}
//   {"stop": 1}   start no more tunnels (the pending "open" answers once those in flight settle)
//   {"stats": 1}                                          → {"rss": bytes, "open": n}

import { parseArgs } from 'node:util'
import { AgentTunnel } from '../../agent/tunnel.ts'
import { parseHostPort } from '../../shared/address.ts'
import { DEFAULTS } from '../../shared/config.ts'
import type { NodeIdentity } from '../../shared/identity-store.ts'
import { joinCluster } from '../../shared/join.ts'
import { createLogger } from '../../shared/log.ts'
import { BulkJoiner } from './bulk-join.ts'
import { announce, exitWithParent, onCommand } from './child.ts'
import { inParallel, SWARM_OPTIONS, simulatedAgent } from './swarm.ts'

const { values } = parseArgs({
  options: {
    ...SWARM_OPTIONS,
    join: { type: 'string', default: 'bulk' },
  },
})
const concurrency = Number(values.concurrency)
const tunnelAddress = parseHostPort(values.tunnel!, DEFAULTS.tunnelPort)
const log = createLogger('swarm', { level: 'error' })
const identities: NodeIdentity[] = []
const tunnels: AgentTunnel[] = []
/** The next identity to open a tunnel with (one tunnel per identity, failed ones are not retried). */
let nextIdentity = 0
let failed = 0
let stopped = false

async function join(target: number): Promise<void> {
  const started = performance.now()
  const joined: NodeIdentity[] = []
  const bulk = values.join === 'bulk' ? new BulkJoiner(values.auth!, values.token!) : undefined
  await bulk?.connect(values.pin!)
  await inParallel(identities.length, target, concurrency, async (i) => {
    const nodename = `${values.name}-${i}`
    joined.push(bulk ? await bulk.join(nodename) : await joinCluster({ authServer: values.auth!, token: values.token!, caPins: [values.pin!], nodename, roles: ['node'] }))
  })
  await bulk?.close()
  identities.push(...joined)
  // Each join's HTTPS clients leave native TLS state that V8 does not feel; collect it now
  // so that the agents' memory is not mistaken for the tunnels'.
  globalThis.gc?.()
  announce({ joined: identities.length, seconds: (performance.now() - started) / 1000 })
}

async function open(target: number): Promise<void> {
  if (target > identities.length) throw new Error(`only ${identities.length} identities joined`)
  const started = performance.now()
  failed = 0
  stopped = false
  const from = nextIdentity
  await inParallel(from, target, concurrency, async (i) => {
    if (stopped) return
    nextIdentity = i + 1
    try {
      const tunnel = await AgentTunnel.open({ ...simulatedAgent(tunnelAddress, identities[i]!, log), connectTimeoutMs: 60_000 })
      tunnel.activate()
      tunnels.push(tunnel)
    } catch (error) {
      failed++
      if (failed === 1) process.stderr.write(`a tunnel failed: ${(error as Error).message}\n`)
    }
  })
  announce({ open: tunnels.length, failed, seconds: (performance.now() - started) / 1000 })
}

onCommand(async (command) => {
  if (typeof command.join === 'number') await join(command.join)
  else if (typeof command.open === 'number') await open(command.open)
  else if (command.stop) stopped = true
  else if (command.stats) announce({ rss: process.memoryUsage().rss, open: tunnels.length })
})
process.on('SIGTERM', () => process.exit(0))
exitWithParent()
announce({ ready: true })
