// `warren known-hosts`: the cluster's node host keys as known_hosts lines, asked of a proxy
// with the user's certificate. The ssh_config a login writes names it as OpenSSH's
// KnownHostsCommand, so that a node that joined after the login is checked as strictly as
// those in the known_hosts file written then.

import { readFileSync } from 'node:fs'
import { ApiClient } from '../shared/api-client.ts'
import { UsageError } from '../shared/errors.ts'
import { defineCommand } from './command.ts'
import { defaultProfileDir, loadProfile, profilePath } from './profile.ts'

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
    const server = flags.proxy ?? loadProfile(dir).proxies[0]
    if (!server) throw new UsageError('no proxy known: pass --proxy=HOST:PORT')
    const client = new ApiClient({
      server,
      caPems: [readFileSync(profilePath(dir, 'hostCA'), 'utf8')],
      certPem: readFileSync(profilePath(dir, 'tlsCert'), 'utf8'),
      keyPem: readFileSync(profilePath(dir, 'tlsKey'), 'utf8'),
    })
    try {
      const { known_hosts } = await client.call('GET /v1/known-hosts')
      process.stdout.write(known_hosts.map((line) => line + '\n').join(''))
    } finally {
      await client.close()
    }
    return 0
  },
})
