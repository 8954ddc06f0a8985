// Polls a condition until it holds, for tests that wait on another process or a timer.

import { setTimeout as sleep } from 'node:timers/promises'

/** Resolves once `check` holds; throws naming `what` when it still does not after `timeoutMs`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, { timeoutMs = 60_000, everyMs = 200 } = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(everyMs)
  }
}
