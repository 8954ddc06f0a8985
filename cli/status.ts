// `warren status`: what a running `warren start` reports about itself, read from the status
// socket in its data dir (shared/status-socket.ts): its roles, the tunnels it holds, its
// certificates. It reads a local socket only, so it works while the cluster does not.

import { DEFAULTS, loadConfigFile } from '../shared/config.ts'
import { UsageError } from '../shared/errors.ts'
import { formatHelp, parseFlags, type FlagSpec } from './flags.ts'
import { readStatus, statusSocketPath } from '../shared/status-socket.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { formatStatus } from './status-text.ts'

const COMMAND = 'warren status'
const USAGE = '[--data-dir=DIR | --config=FILE] [--format=text|json]\n\nExample: warren status --data-dir=/var/lib/warren --format=json'
const FORMATS = ['text', 'json']

export const STATUS_FLAGS: FlagSpec = {
  'data-dir': { type: 'string', description: `the data dir of the process to ask (default: the config's data_dir, else ${DEFAULTS.dataDir})` },
  config: { type: 'string', description: 'the config file the process runs with (for its data_dir)' },
  format: { type: 'string', default: 'text', description: 'text or json' },
}

export async function status(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(argv, STATUS_FLAGS, COMMAND)
  if (flags.help) {
    process.stdout.write(formatHelp(COMMAND, STATUS_FLAGS, USAGE))
    return 0
  }
  if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}" for "${COMMAND}"`)
  if (!FORMATS.includes(flags.format)) throw new UsageError(`unknown --format "${flags.format}": use ${FORMATS.join(' or ')}`)
  const dataDir: string = flags['data-dir'] ?? (flags.config ? loadConfigFile(flags.config).dataDir : DEFAULTS.dataDir)
  const document = await readStatus<WarrenStatus>(statusSocketPath(dataDir))
  process.stdout.write(flags.format === 'json' ? JSON.stringify(document, null, 2) + '\n' : formatStatus(document))
  return 0
}
