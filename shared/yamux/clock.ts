// A monotonic clock in milliseconds for round trips and window tuning. performance.now()
// would do, but the first use of the `performance` global loads Node's whole perf_hooks
// machinery, resident memory that an agent with nothing else to time would hold for
// nothing (see bench:footprint).

/** Milliseconds from an arbitrary, fixed origin; never goes back. */
export function monotonicMs(): number {
  const [seconds, nanoseconds] = process.hrtime()
  return seconds * 1e3 + nanoseconds / 1e6
}
