// Runs a command function and turns its failure into a message and an exit code: a person
// reads "ERROR: ..." on standard error, never a stack trace (unless WARREN_DEBUG is set).

import { WarrenError } from '../shared/errors.ts'
import { printable } from '../shared/printable.ts'

export async function runMain(command: (argv: string[]) => Promise<number | undefined>, argv: string[]): Promise<void> {
  endQuietlyOnClosedOutput()
  try {
    const code = await command(argv)
    if (typeof code === 'number') process.exitCode = code
  } catch (error) {
    const err = error as Error
    // A message can carry a proxy's or a node's refusal: nothing in it may act on the terminal.
    process.stderr.write(`ERROR: ${printable(String(err?.message ?? error))}\n`)
    if (process.env.WARREN_DEBUG && err.stack) process.stderr.write(err.stack + '\n')
    process.exitCode = error instanceof WarrenError ? error.exitCode : 1
  }
}

/**
 * A reader that stops early (`warrenctl tokens ls | head -1`) closes standard output; the
 * next write fails with EPIPE (ECONNRESET for a socket). What was written is what the reader wanted, so the command
 * ends there with status 0, as it would have had the reader read on. Every command prints
 * only after it has done its work, so nothing is left half done.
 */
function endQuietlyOnClosedOutput(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    // A socket's reader resets it rather than closing a pipe (OpenSSH's ProxyUseFdpass does).
    if (error.code === 'EPIPE' || error.code === 'ECONNRESET') process.exit(0)
    throw error
  })
}
