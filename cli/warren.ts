#!/usr/bin/env node

// `warren`: the daemon (start) and the user's client. `warren ctl ...` is warrenctl.

import { type Command, defineCommand } from './command.ts'
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

/**
 * Helpers the node starts as a login, not commands for people (so not listed): its own SFTP
 * server, and the socket of a forwarded SSH agent. Commands all the same, so that `--help`
 * prints their usage and does nothing else, and an unknown flag or argument is a usage error.
 */
const HIDDEN: Record<string, Command> = {
  'sftp-server': defineCommand({
    name: 'warren sftp-server',
    summary: "Warren's SFTP server on standard input and output; the node runs it as the login for scp and sftp, people do not",
    flags: {},
    examples: ['warren sftp-server'],
    run: async () => (await load.sftpServer()).sftpServerCommand(),
  }),
  'agent-socket': defineCommand({
    name: 'warren agent-socket',
    summary: 'the Unix socket of a forwarded SSH agent, made as the login and handed to the node over its IPC channel; the node runs it for ssh -A, people do not',
    flags: {},
    examples: ['warren agent-socket'],
    run: async () => (await load.agentSocket()).agentSocketCommand(),
  }),
}

export async function warren(argv: string[]): Promise<number | undefined> {
  if (argv[0] === 'ctl') return (await load.warrenctl()).warrenctl(argv.slice(1))
  const hidden = Object.hasOwn(HIDDEN, argv[0] ?? '') ? HIDDEN[argv[0]] : undefined
  if (hidden) return hidden.run(argv.slice(1))
  return runProgram(WARREN, argv)
}

if (import.meta.main) await runMain(warren, process.argv.slice(2))
