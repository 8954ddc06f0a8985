// How many malloc arenas glibc gives a warren process (MALLOC_ARENA_MAX, read once when
// the process starts, so it is set in the environment it starts with).
//
// glibc gives a thread that allocates while another holds the main arena an arena of its
// own (up to eight per core) and keeps the memory freed there for that arena. V8's worker
// threads (background compilation, concurrent marking and sweeping) each took one while an
// agent started, and kept 1.6 MB more in them than the agent then used. With two arenas,
// the main thread's and one the workers share, the idle agent holds 60.6 MB instead of
// 62.3 MB; with one, the same 60.6 MB, but then the workers would wait for the main
// thread's lock. Measured in alternating runs of the executable (bench/results/2026-12-04-footprint.md).
// The sessions a node serves do not inherit it: they start with an environment of their own.

/** The environment variable glibc reads, and the value warren processes start with. */
export const MALLOC_ARENAS = { variable: 'MALLOC_ARENA_MAX', value: '2' } as const

/** `env` with MALLOC_ARENA_MAX set, unless it already names a value of its own. */
export function withMallocArenas(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return env[MALLOC_ARENAS.variable] ? env : { ...env, [MALLOC_ARENAS.variable]: MALLOC_ARENAS.value }
}
