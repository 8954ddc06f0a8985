// The single executable's entry: one file answers to both names. Invoked as `warrenctl`
// (a symlink or a copy of that name) it administers the cluster; under any other name it
// is `warren`.

import { basename } from 'node:path'
import { load } from '../cli/load.ts'
import { runMain } from '../cli/main.ts'
import { warren } from '../cli/warren.ts'

/**
 * The command for the name the file was invoked by. argv0 keeps a symlink's own name,
 * where execPath would already point at the file behind it.
 */
export function commandFor(invokedAs: string): typeof warren {
  return basename(invokedAs).startsWith('warrenctl') ? async (argv) => (await load.warrenctl()).warrenctl(argv) : warren
}

// In a single executable argv[1] repeats the executable's path, so the arguments start at 2.
void runMain(commandFor(process.argv0), process.argv.slice(2))
