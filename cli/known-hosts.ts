// `warren known-hosts`: the cluster's node host keys as known_hosts lines, asked of a proxy
// with the user's certificate. The ssh_config a login writes names it as OpenSSH's
// KnownHostsCommand, so that a node that joined after the login is checked as strictly as
// those in the known_hosts file written then.

import { defineCommand } from './command.ts'
import { defaultProfileDir, proxyApiClient } from './profile.ts'

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
    const dir = flags.identity ?? defaultProfileDir()
    const client = proxyApiClient(dir, flags.proxy)
    try {
      const { known_hosts } = await client.call('GET /v1/known-hosts')
      process.stdout.write(known_hosts.map((line) => line + '\n').join(''))
    } finally {
      await client.close()
    }
    return 0
  },
})
