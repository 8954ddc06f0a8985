// The join token once a role has joined: the stored identity replaces it, so it should not
// stay where others can read it. A value on the command line is dropped from the process's
// arguments (start.ts starts afresh without it); a token kept in the config file or in a
// token file is removed only when the operator asks (--forget-token), since the operator
// may still want it, and otherwise a warning says where it is.

import { readFileSync, rmSync, statSync } from 'node:fs'
import { parseDocument } from 'yaml'
import { writeFileAtomic } from '../shared/files.ts'
import type { Logger } from '../shared/log.ts'
import { withoutFlag } from './command-line-secrets.ts'

/** Where the token a role joined with came from. */
export interface TokenOrigin {
  /** As given: the value, a file path (starting with /), or - for standard input. */
  given: string
  /** The config file whose `auth_token` gave it; undefined when --token did. */
  configPath?: string
}

export function tokenOrigin(flags: { token?: string; config?: string }, configToken: string | undefined): TokenOrigin | undefined {
  if (flags.token !== undefined) return { given: flags.token }
  if (configToken !== undefined && flags.config !== undefined) return { given: configToken, configPath: flags.config }
  return undefined
}

/** Whether the token itself is on the command line (not a file path, not standard input). */
export function tokenOnCommandLine(flags: { token?: string }): boolean {
  return flags.token !== undefined && flags.token !== '-' && !flags.token.startsWith('/')
}

/** `args` without `--token=VALUE` or `--token VALUE`. */
export function withoutToken(args: string[]): string[] {
  return withoutFlag(args, 'token')
}

/**
 * After a join: with `forget`, removes the token from the config file (its `auth_token`)
 * and deletes the token file it named; without, warns where the token still is. A token
 * given on the command line or standard input is kept nowhere. Never fails the start.
 */
export function settleJoinToken(origin: TokenOrigin, forget: boolean, log: Logger): void {
  // The field is `invite_source`: the logger redacts fields named like a token.
  const tokenFile = origin.given.startsWith('/') ? origin.given : undefined
  const source = tokenFile ?? origin.configPath
  if (source === undefined) return
  if (!forget) {
    log.warn(`the join token is still in ${source}, though this host needs it no more: remove it, or start with --forget-token to have it removed after a join`, {
      invite_source: source,
    })
    return
  }
  try {
    if (origin.configPath !== undefined) removeAuthToken(origin.configPath)
    if (tokenFile !== undefined) rmSync(tokenFile, { force: true })
    log.info(`removed the join token from ${source}`, { invite_source: source })
  } catch (error) {
    log.warn(`could not remove the join token from ${source}: ${(error as Error).message}`, { invite_source: source })
  }
}

/** Rewrites the config file without its `auth_token`, keeping its comments, layout and mode. */
function removeAuthToken(path: string): void {
  const doc = parseDocument(readFileSync(path, 'utf8'))
  if (!doc.has('auth_token')) return
  doc.delete('auth_token')
  writeFileAtomic(path, doc.toString(), statSync(path).mode & 0o777)
}
