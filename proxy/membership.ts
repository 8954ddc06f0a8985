// A proxy's place in the live set: its heartbeats put it there, its clean stop takes it out.
// A heartbeat still on its way when the proxy leaves would land after the leave and put the
// proxy back; the other proxies would then never see it go, and never announce its return
// with a spread, so its nodes would all come back at once. Leaving therefore waits for
// that heartbeat first.

export class LiveSetMembership {
  private readonly beat: () => Promise<void>
  private readonly remove: () => Promise<void>
  private inFlight?: Promise<void>
  private leaving = false

  /** `beat` writes one heartbeat and handles its own errors; `remove` takes the proxy out. */
  constructor(beat: () => Promise<void>, remove: () => Promise<void>) {
    this.beat = beat
    this.remove = remove
  }

  /** One heartbeat at a time: a slow auth server gets fewer, not a pile of them. */
  heartbeat(): Promise<void> {
    if (this.leaving) return Promise.resolve()
    this.inFlight ??= this.beat().finally(() => {
      this.inFlight = undefined
    })
    return this.inFlight
  }

  /**
   * Takes the proxy out of the live set once no heartbeat can put it back, waiting at most
   * `maxWaitMs` for one on its way: an auth server that does not answer must not hold up
   * a stop (the proxy's record then expires by itself).
   */
  async leave(maxWaitMs: number): Promise<void> {
    this.leaving = true
    if (this.inFlight) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([this.inFlight, new Promise<void>((resolve) => (timer = setTimeout(resolve, maxWaitMs)))])
      clearTimeout(timer)
    }
    await this.remove()
  }
}
