// How the node starts Warren's own SFTP server: this very program, `warren sftp-server`.
// The single executable is its own interpreter; from a checkout or a bundle, the Node that
// runs the agent runs the script again.

import { join } from 'node:path'
import { isSea } from 'node:sea'

/** The argv of `warren sftp-server` for this installation: program first. */
export function builtinSftpServerCommand(): string[] {
  if (isSea()) return [process.execPath, 'sftp-server']
  // In a bundle this file's name is the bundle's; in a checkout, cli/warren.ts is the entry.
  const self = import.meta.filename
  const script = self.endsWith('.ts') ? join(import.meta.dirname, '../../cli/warren.ts') : self
  return [process.execPath, script, 'sftp-server']
}
