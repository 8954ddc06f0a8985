// libfaketime (Debian's faketime package) runs a real process at another time: the wall clock
// of a device without a real-time clock, or of a server whose clock is wrong or is set.

export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'

/**
 * The environment that runs a process at the time `file` names (libfaketime's syntax:
 * `@1970-01-02 00:00:00`, `+8d`, `+0`); writing the file sets the clock.
 */
export function fakeTime(file: string): Record<string, string> {
  return {
    LD_PRELOAD: LIBFAKETIME,
    FAKETIME_TIMESTAMP_FILE: file,
    // Read the file again each second, so that a change of it is the clock being set.
    FAKETIME_CACHE_DURATION: '1',
    // Timers run on the monotonic clock, which a step of the wall clock (NTP) leaves alone.
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  }
}

/** The environment of a process whose clock runs `offset` (libfaketime's syntax: `+45s`, `+40m`) from the real one. */
export function clockOffBy(offset: string): Record<string, string> {
  return { LD_PRELOAD: LIBFAKETIME, FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1' }
}
