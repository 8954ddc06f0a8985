// What the two agent swarms (agent-swarm.ts, pool-swarm.ts) share: their command-line
// options, running many joins or dials with a bound on those in flight, and the options of
// a simulated agent's tunnel.

import type { TunnelOptions } from '../../agent/tunnel.ts'
import { DEFAULTS } from '../../shared/config.ts'
import type { NodeIdentity } from '../../shared/identity-store.ts'
import type { Logger } from '../../shared/log.ts'

/** The command-line options every swarm process takes from the benchmark that starts it. */
export const SWARM_OPTIONS = {
  auth: { type: 'string' },
  token: { type: 'string' },
  pin: { type: 'string' },
  tunnel: { type: 'string' },
  name: { type: 'string', default: 'sim' },
  concurrency: { type: 'string', default: '32' },
} as const

/** Runs `task` for indexes [from, to) with `concurrency` in flight. */
export async function inParallel(from: number, to: number, concurrency: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = from
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < to) await task(next++)
    }),
  )
}

/** A node with the agent's default intervals that offers SSH and refuses every stream. */
export function simulatedAgent(address: { host: string; port: number }, identity: NodeIdentity, log: Logger): TunnelOptions {
  return {
    ...address,
    identity,
    keepAliveIntervalMs: DEFAULTS.keepaliveIntervalMs,
    labels: () => ({}),
    services: ['ssh'],
    onStream: (stream) => stream.destroy(),
    log,
  }
}
