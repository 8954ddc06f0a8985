// How the node starts one of Warren's own helpers as a login (`warren sftp-server`,
// `warren agent-socket`): this very program again. The single executable is its own
// interpreter; from a checkout or a bundle, the Node that runs the agent runs the script.

import { join } from 'node:path'
import { isSea } from 'node:sea'

/** The argv of `warren ARGS...` for this installation: program first. */
export function warrenCommand(...args: string[]): string[] {
  if (isSea()) return [process.execPath, ...args]
  // In a bundle this file's name is the bundle's; in a checkout, cli/warren.ts is the entry.
  const self = import.meta.filename
  const script = self.endsWith('.ts') ? join(import.meta.dirname, '../cli/warren.ts') : self
  return [process.execPath, script, ...args]
}
