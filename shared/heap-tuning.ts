// V8's heap for the processes that forward users' bytes (the proxy, the agent, a local
// listener): how large the young generation may grow, and when a major GC starts.
//
// Every socket or TLS read hands JavaScript a freshly allocated buffer, and V8 counts those
// bytes (external memory) against the old generation's allocation limit until a GC frees
// them. With V8's default heap growing factor, the limit of a heap as small as these
// processes hold sits only a few MB above the live heap, so bulk forwarding ran a full
// mark-compact every few tens of MB moved, a large share of the CPU of a process that
// moves nothing but bytes. A growing factor of 3 leaves room for about three times that
// between major GCs; the heap itself stays as it was (what grows is only the limit that
// starts the next GC), and V8's memory reducer still shrinks an idle heap (bench:tunnel,
// bench/results/2026-11-25-tunnel.md).
//
// An SSH port forward downloading through the agent adds ssh2's packets and ciphertexts to
// those buffers: with a factor of 3 it still ran 78 major GCs for 1 GB each way, with 5 or 7
// it ran 2 and the agent's CPU per GB halved, at the same peak resident size (bench:ssh,
// bench/results/2026-12-05-young-gen.md). An idle node scraped for metrics, though, held
// about 1 MB more with 7 (bench:footprint): so a node takes 7 only from its first stream,
// and never in a process that also runs the proxy, whose heap at 10,000 tunnels is large.
// A user's forwarding process (`warren proxy ssh`, `warren proxy port`) takes 7 from its
// start: it exists to move bytes and its heap is small, and with 3 a `proxy port --listen`
// still spent about a third of its CPU in full GCs (bench:ssh, warren-port-listen and the
// ProxyCommand of warren-ssh, CPU per GB; bench/results/2026-12-08-client-heap.md).

import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'

/**
 * The young generation of a process that forwards bytes stays at V8's first size, one MiB
 * per semi-space. Each read's buffer is young until a scavenge frees it, and until a GC
 * frees them V8 counts buffers' bytes against the limit that starts the next full GC. Left
 * to grow (V8 grows a steadily allocating heap's semi-spaces to 16 MiB or more), scavenges
 * came so rarely that those bytes reached the limit first, and the agent ran a full
 * mark-compact every few tens of MB copied; a scavenge every MiB of objects frees them at a
 * fraction of the cost (bench:copy, node CPU per GB; the GC counts are in
 * bench/results/2026-12-05-young-gen.md). A 2 MiB semi-space was already too large there.
 */
export const YOUNG_GENERATION_SEMI_SPACE_MB = 1

/**
 * Node's options every Warren process starts with. V8 reads the semi-space cap only when
 * the process starts: the single executable embeds them (packaging/sea.ts), and from source
 * `warren start` relaunches itself with them (cli/start.ts).
 */
export const WARREN_EXEC_ARGV = [`--max-semi-space-size=${YOUNG_GENERATION_SEMI_SPACE_MB}`]

/** Whether this process started with WARREN_EXEC_ARGV. */
export function startedWithWarrenExecArgv(): boolean {
  return WARREN_EXEC_ARGV.every((option) => process.execArgv.includes(option))
}

/** The young generation's size now: both semi-spaces. */
export function youngGenerationBytes(): number {
  return getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0
}

/** The old generation may grow to 1 + this/100 times its live size before the next major GC. */
export const HEAP_GROWING_PERCENT = 200

/** The same for a node once it serves a stream, and for a user's forwarding process (a factor of 7). */
export const STREAMING_HEAP_GROWING_PERCENT = 600

let proxyInProcess = false
let streaming = false

/** Sets the heap growing factor for a forwarding role (a client: `warren proxy ssh`, `proxy port`); call once it starts. */
export function tuneHeapForForwarding(role: 'proxy' | 'node' | 'client'): void {
  if (role === 'proxy') proxyInProcess = true
  setFlagsFromString(`--heap-growing-percent=${role === 'client' ? STREAMING_HEAP_GROWING_PERCENT : HEAP_GROWING_PERCENT}`)
}

/** A node's first stream: from now on it moves bytes (not in a process with the proxy). */
export function tuneHeapForStreams(): void {
  if (proxyInProcess || streaming) return
  streaming = true
  setFlagsFromString(`--heap-growing-percent=${STREAMING_HEAP_GROWING_PERCENT}`)
}
