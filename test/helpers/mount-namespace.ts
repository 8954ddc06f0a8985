// Tests that run a node in a mount namespace of its own (a /run or /var/log of the test's),
// so that what the node sees or writes there is not the host's.

import { spawnSync } from 'node:child_process'

/** Why this process cannot make a mount namespace, or undefined when it can. */
export function mountNamespaceUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to make a mount namespace'
  if (spawnSync('unshare', ['--mount', 'true']).status !== 0) return 'unshare --mount is not available'
  return undefined
}
