// `warren known-hosts`: the cluster's node host keys as known_hosts lines, asked of a proxy
// with the user's certificate, for an OpenSSH KnownHostsCommand or a known_hosts file of
// one's own. (The ssh_config a login writes does without: see host-keys.ts.)

import { defineCommand } from './command.ts'
import { fetchKnownHosts } from './host-keys.ts'
import { defaultProfileDir } from './profile.ts'

export const knownHostsCommand = defineCommand({
  name: 'warren known-hosts',
  summary: "the nodes' SSH host keys as known_hosts lines (OpenSSH's KnownHostsCommand)",
  operands: ['[HOST]'],
  flags: {
    identity: { type: 'path', placeholder: 'DIR', defaultText: '$WARREN_HOME, else ~/.warren', description: 'directory with the credentials of a login' },
    proxy: { type: 'string', placeholder: 'HOST:PORT', defaultText: 'the first proxy of the credentials', description: "a proxy's web port" },
  },
  description: 'Every node is listed, whatever HOST names: OpenSSH picks the lines for the host it connects to.',
  examples: ['warren known-hosts --identity=~/.warren/home'],
  async run(flags) {
    const lines = await fetchKnownHosts(flags.identity ?? defaultProfileDir(), flags.proxy)
    process.stdout.write(lines.map((line) => line + '\n').join(''))
    return 0
  },
})
