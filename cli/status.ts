// `warren status`: what a running `warren start` reports about itself, read from the status
// socket in its data dir (shared/status-socket.ts): its roles, the tunnels it holds, its
// certificates. It reads a local socket only, so it works while the cluster does not.

import { existsSync } from 'node:fs'
import { DEFAULTS, loadConfigFile } from '../shared/config.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { readStatus, statusSocketPath } from '../shared/status-socket.ts'
import { defineCommand } from './command.ts'
import { formatStatus } from './status-text.ts'

export const statusCommand = defineCommand({
  name: 'warren status',
  summary: 'what a running "warren start" holds (its roles, tunnels and certificates), else who is logged in',
  flags: {
    'data-dir': { type: 'path', placeholder: 'DIR', defaultText: `the config's data_dir, else ${DEFAULTS.dataDir}`, description: 'the data dir of the process to ask' },
    config: { type: 'path', placeholder: 'FILE', description: 'the config file the process runs with (for its data_dir)' },
    format: { type: 'enum', values: ['text', 'json'], default: 'text', description: 'text for people, json for programs' },
  },
  description: `It asks the process on the status socket in its data dir (<data_dir>/warren.sock), so it
    works while the cluster does not. Without a process on that data dir it exits 1; without flags and
    without a data dir, it shows the logins of "warren login" instead: user, cluster, roles, logins, expiry.`,
  examples: ['warren status --data-dir=/var/lib/warren', 'warren status --config=/etc/warren.yaml --format=json'],
  async run(flags) {
    const dataDir = flags['data-dir'] ?? (flags.config ? loadConfigFile(flags.config).dataDir : DEFAULTS.dataDir)
    // On a machine that runs no warren start, the status that matters is the person's logins.
    if (!flags['data-dir'] && !flags.config && !existsSync(statusSocketPath(dataDir))) {
      process.stdout.write((await import('./login.ts')).loginStatusText())
      return 0
    }
    const document = await readStatus<WarrenStatus>(statusSocketPath(dataDir))
    process.stdout.write(flags.format === 'json' ? JSON.stringify(document, null, 2) + '\n' : formatStatus(document))
    return 0
  },
})
