#!/usr/bin/env node

// `warren`: the daemon (start) and the user's client. `warren ctl ...` is warrenctl.

import { load } from './load.ts'
import { runMain } from './main.ts'
import { type Program, runProgram } from './program.ts'

export const WARREN: Program = {
  name: 'warren',
  summary: 'Warren runs the roles of a host (auth server, proxy, node) and reaches nodes through a proxy.',
  // Each command's code is loaded when it runs (see load.ts), or when the list names it.
  commands: {
    start: async () => (await load.start()).startCommand,
    status: async () => (await load.status()).statusCommand,
    login: async () => (await load.login()).loginCommand,
    logout: async () => (await load.login()).logoutCommand,
    ls: async () => (await load.ls()).lsCommand,
    ssh: async () => (await load.ssh()).sshCommand,
    play: async () => (await load.play()).playCommand,
    'proxy ssh': async () => (await load.ssh()).proxySshCommand,
    'proxy port': async () => (await load.ssh()).proxyPortCommand,
    'known-hosts': async () => (await load.knownHosts()).knownHostsCommand,
    install: async () => (await load.install()).installCommand,
  },
  extraListing: [['ctl', 'administer the cluster: "warren ctl COMMAND" is "warrenctl COMMAND"']],
}

export async function warren(argv: string[]): Promise<number | undefined> {
  if (argv[0] === 'ctl') return (await load.warrenctl()).warrenctl(argv.slice(1))
  // Helpers the node starts as a login, not commands for people: its own SFTP server, and
  // the socket of a forwarded SSH agent.
  if (argv[0] === 'sftp-server') return (await load.sftpServer()).sftpServerCommand()
  if (argv[0] === 'agent-socket') return (await load.agentSocket()).agentSocketCommand()
  return runProgram(WARREN, argv)
}

if (import.meta.main) await runMain(warren, process.argv.slice(2))
