// Runs a command function and turns its failure into a message and an exit code: a person
// reads "ERROR: ..." on standard error, never a stack trace (unless WARREN_DEBUG is set).

import { WarrenError } from '../shared/errors.ts'

export async function runMain(command: (argv: string[]) => Promise<number | void>, argv: string[]): Promise<void> {
  try {
    const code = await command(argv)
    if (typeof code === 'number') process.exitCode = code
  } catch (error) {
    const err = error as Error
    process.stderr.write(`ERROR: ${err.message}\n`)
    if (process.env.WARREN_DEBUG && err.stack) process.stderr.write(err.stack + '\n')
    process.exitCode = error instanceof WarrenError ? error.exitCode : 1
  }
}
