// What the two agent swarms (agent-swarm.ts, pool-swarm.ts) share: running many joins or
// dials with a bound on those in flight, and the options of a simulated agent's tunnel.

import type { TunnelOptions } from '../../agent/tunnel.ts'
import { DEFAULTS } from '../../shared/config.ts'
import type { NodeIdentity } from '../../shared/identity-store.ts'
import type { Logger } from '../../shared/log.ts'

/** Runs `task` for indexes [from, to) with `concurrency` in flight. */
export async function inParallel(from: number, to: number, concurrency: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = from
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < to) await task(next++)
  }))
}

/** A node with the agent's default intervals that offers SSH and refuses every stream. */
export function simulatedAgent(address: { host: string; port: number }, identity: NodeIdentity, log: Logger): TunnelOptions {
  return {
    ...address,
    identity,
    keepAliveIntervalMs: DEFAULTS.keepaliveIntervalMs,
    heartbeatIntervalMs: DEFAULTS.heartbeatIntervalMs,
    labels: () => ({}),
    services: ['ssh'],
    onStream: (stream) => stream.destroy(),
    log,
  }
}
