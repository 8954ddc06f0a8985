// A monotonic clock in milliseconds for round trips and window tuning. performance.now()
// would do, but the first use of the `performance` global loads Node's whole perf_hooks
// machinery: 2.6 MB of resident memory (2.4 MB of it the executable's pages) in an agent
// that has nothing else to time (measured; see bench/README.md, agent footprint).

/** Milliseconds from an arbitrary, fixed origin; never goes back. */
export function monotonicMs(): number {
  const [seconds, nanoseconds] = process.hrtime()
  return seconds * 1e3 + nanoseconds / 1e6
}
