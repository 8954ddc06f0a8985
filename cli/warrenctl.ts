#!/usr/bin/env node

// `warrenctl`: cluster administration through the auth server's admin API. Each command
// group is a file of cli/ctl/.

import type { Command } from './command.ts'
import { auditLs } from './ctl/audit.ts'
import { authRotate, authSign } from './ctl/auth.ts'
import { backup, restore } from './ctl/backup.ts'
import { lock, lockLs, lockRm } from './ctl/locks.ts'
import { nodesLabel, nodesLs, nodesRm } from './ctl/nodes.ts'
import { recordingsGet, recordingsLs } from './ctl/recordings.ts'
import { create, get, rm } from './ctl/roles.ts'
import { status } from './ctl/status.ts'
import { nodesAdd, tokensAdd, tokensDel, tokensLs, tokensRm } from './ctl/tokens.ts'
import { usersAdd, usersLs, usersReset, usersRm } from './ctl/users.ts'
import { runMain } from './main.ts'
import { type Program, runProgram } from './program.ts'

const COMMANDS: Command[] = [
  status,
  nodesAdd,
  nodesLs,
  nodesRm,
  nodesLabel,
  tokensAdd,
  tokensLs,
  tokensRm,
  tokensDel,
  usersAdd,
  usersLs,
  usersRm,
  usersReset,
  authSign,
  authRotate,
  lock,
  lockLs,
  lockRm,
  auditLs,
  recordingsLs,
  recordingsGet,
  create,
  get,
  rm,
  backup,
  restore,
]

export const WARRENCTL: Program = {
  name: 'warrenctl',
  summary:
    "warrenctl administers a Warren cluster through its auth server's admin API, with the admin identity in the auth server's data dir, or from any machine as a user logged in with warren login whose roles grant editor (through a proxy).",
  commands: Object.fromEntries(COMMANDS.map((command) => [command.spec.name.replace(/^warrenctl /, ''), async () => command])),
}

export function warrenctl(argv: string[]): Promise<number | undefined> {
  return runProgram(WARRENCTL, argv)
}

if (import.meta.main) await runMain(warrenctl, process.argv.slice(2))
