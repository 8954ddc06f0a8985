// V8's optimising compilers (Maglev and TurboFan) in a node agent that may sit idle for
// months. Idle, an agent runs keepalives, heartbeats and scrapes, which V8's interpreter and
// its baseline compiler (Sparkplug) run well; yet once the optimisers run they keep about
// 2 MB resident, most of it their own code in the executable (bench:footprint). So a
// process that runs only the node role starts with them off, and turns them on for good at
// the first stream it serves, where the SSH server and bulk forwarding need them
// (bench:ssh, bench:tunnel). V8 reads these flags when it decides to optimise a function,
// so turning them on later takes effect from then on (optimising-compilers.test.ts).

import { setFlagsFromString } from 'node:v8'

export type OptimisingCompilersState = 'on' | 'off until the first stream'

let state: 'default' | 'deferred' | 'on' = 'default'

/** Turns the optimising compilers off until startOptimisingCompilers(); only once per process. */
export function deferOptimisingCompilers(): void {
  if (state !== 'default') return
  state = 'deferred'
  setFlagsFromString('--no-maglev')
  setFlagsFromString('--no-turbofan')
}

/** Turns them back on, if deferOptimisingCompilers() turned them off; idempotent and cheap. */
export function startOptimisingCompilers(): void {
  if (state !== 'deferred') return
  state = 'on'
  setFlagsFromString('--maglev')
  setFlagsFromString('--turbofan')
}

export function optimisingCompilers(): OptimisingCompilersState {
  return state === 'deferred' ? 'off until the first stream' : 'on'
}
