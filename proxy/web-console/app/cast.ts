// Asciicast v2 (what nodes record): a JSON header line, then one JSON array per event,
// [seconds since the start, code, data]: "o" output, "i" input, "r" a resize to "COLSxROWS".
// The player hands output and resizes to a terminal at the recorded pace times `speed`.
// Sizes come from whoever drove the session (an SSH client asks for any window size), so
// they are bounded here: a screen of 65535×65535 cells would take the replaying browser down.

export interface Cast {
  width: number
  height: number
  events: [number, string, string][]
}

/** The largest screen replayed, as the web terminal allows (terminal.ts); larger sizes are cut to it. */
export const MAX_SIZE = 1000

/** A recorded width or height as a screen may take it: a whole number from 1 to MAX_SIZE, else `fallback`. */
function screenSize(value: unknown, fallback: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 1) return fallback
  return Math.min(Math.floor(value), MAX_SIZE)
}

export function parseCast(text: string): Cast {
  const lines = text.split('\n').filter((line) => line.trim() !== '')
  if (lines.length === 0) throw new Error('the recording is empty')
  const header = JSON.parse(lines[0]) as { version?: number; width?: unknown; height?: unknown }
  if (header.version !== 2) throw new Error('the recording is not in asciicast v2 format')
  const events = lines.slice(1).map((line) => JSON.parse(line) as [number, string, string])
  return { width: screenSize(header.width, 80), height: screenSize(header.height, 24), events }
}

export interface PlayerScreen {
  write(data: string): void
  resize(cols: number, rows: number): void
  /** Back to the start: a clear screen of the recording's first size. */
  reset(): void
  /** Where the replay is, in recorded seconds, and whether it ended. */
  progress(at: number, ended: boolean): void
}

export class CastPlayer {
  readonly #cast: Cast
  readonly #screen: PlayerScreen
  #speed = 1
  #next = 0
  /** Recorded seconds played so far, as of #since (a performance.now() time). */
  #position = 0
  #since = 0
  #timer: ReturnType<typeof setTimeout> | undefined

  constructor(cast: Cast, screen: PlayerScreen) {
    this.#cast = cast
    this.#screen = screen
  }

  get playing(): boolean {
    return this.#timer !== undefined
  }

  get duration(): number {
    return this.#cast.events.at(-1)?.[0] ?? 0
  }

  play(): void {
    if (this.playing) return
    if (this.#next >= this.#cast.events.length) this.restart()
    this.#since = performance.now()
    this.#schedule()
  }

  pause(): void {
    if (!this.playing) return
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#position = this.#now()
  }

  /** Changes the pace from here on. */
  setSpeed(speed: number): void {
    const playing = this.playing
    this.pause()
    this.#speed = speed
    if (playing) this.play()
  }

  restart(): void {
    this.pause()
    this.#next = 0
    this.#position = 0
    this.#screen.reset()
    this.#screen.progress(0, false)
  }

  stop(): void {
    this.pause()
  }

  #now(): number {
    return this.#position + ((performance.now() - this.#since) / 1000) * this.#speed
  }

  #schedule(): void {
    const now = this.#now()
    const events = this.#cast.events
    // Everything due by now goes out in one go, then a wait for the next event.
    while (this.#next < events.length && events[this.#next][0] <= now) {
      const [, code, data] = events[this.#next++]
      if (code === 'o') this.#screen.write(data)
      else if (code === 'r') {
        const [cols, rows] = data.split('x').map(Number)
        if (cols >= 1 && rows >= 1) this.#screen.resize(screenSize(cols, 80), screenSize(rows, 24))
      }
    }
    const ended = this.#next >= events.length
    this.#screen.progress(Math.min(now, this.duration), ended)
    if (ended) {
      this.#position = this.duration
      this.#timer = undefined
      return
    }
    this.#timer = setTimeout(() => this.#schedule(), ((events[this.#next][0] - now) / this.#speed) * 1000)
  }
}
