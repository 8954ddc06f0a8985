// V8 heap growth for the processes that forward users' bytes (the proxy and the agent).
//
// Every socket or TLS read hands JavaScript a freshly allocated buffer, and V8 counts those
// bytes (external memory) against the old generation's allocation limit until its next
// major GC. With V8's default heap growing factor, the limit of a heap as small as these
// processes hold sits only a few MB above the live heap, so bulk forwarding ran a full
// mark-compact every few tens of MB moved, a large share of the CPU of a process that
// moves nothing but bytes. A growing factor of 3 leaves room for about three times that
// between major GCs; the heap itself stays as it was (what grows is only the limit that
// starts the next GC), and V8's memory reducer still shrinks an idle heap.
//
// Measured with bench:tunnel (the GC counts are in bench/results/2026-11-25-tunnel.md).

import { setFlagsFromString } from 'node:v8'

/** The old generation may grow to 1 + this/100 times its live size before the next major GC. */
export const HEAP_GROWING_PERCENT = 200

let tuned = false

/** Sets the heap growing factor for this process; idempotent. Call once a forwarding role starts. */
export function tuneHeapForForwarding(): void {
  if (tuned) return
  tuned = true
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}
