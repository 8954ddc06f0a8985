// The logins an SSH session can run as: accounts from /etc/passwd, then from the system's
// other account sources (LDAP, SSSD, extrausers: NSS), as sshd's getpwnam(3) finds them.

import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'

/** A login the server can run sessions as. */
export interface LoginAccount {
  name: string
  uid: number
  gid: number
  home: string
  shell: string
  /**
   * Supplementary groups (without `gid`), for an account that NSS gave: what its group
   * sources say (`getent initgroups`). Absent for an /etc/passwd account, whose groups
   * /etc/group holds (`supplementaryGroups`).
   */
  groups?: number[]
  /**
   * The day (since 1970-01-01, UTC) from which the account is expired, as shadow(5)'s
   * account expiration date (`chage -E`, `usermod --expiredate`): sshd refuses such an
   * account, and so does the node. Absent when it has none or it could not be read.
   */
  expiresOnDay?: number
}

/** How long a lookup through NSS may take: a directory server that does not answer must not hold a login for ever. */
export const NSS_LOOKUP_TIMEOUT_MS = 5_000

/** getpwnam(3) for /etc/passwd only (no NSS): name:password:uid:gid:gecos:home:shell. */
export function lookupPasswd(login: string): LoginAccount | undefined {
  let text: string
  try {
    text = readFileSync('/etc/passwd', 'utf8')
  } catch {
    return undefined
  }
  for (const line of text.split('\n')) {
    const account = parsePasswdLine(line, login)
    if (account === undefined) return undefined
    if (account !== null) return withExpiry(account, shadowExpiry(readShadow(), login))
  }
  return undefined
}

/** /etc/shadow's text; empty when it cannot be read (an agent not running as root). */
function readShadow(): string {
  try {
    return readFileSync('/etc/shadow', 'utf8')
  } catch {
    return ''
  }
}

/** The expiration day of `login`'s shadow(5) entry in `text`, if it has one. */
function shadowExpiry(text: string, login: string): number | undefined {
  for (const line of text.split('\n')) {
    // name:password:lastchange:min:max:warn:inactive:expire:reserved
    const fields = line.split(':')
    if (fields.length !== 9 || fields[0] !== login) continue
    return /^\d+$/.test(fields[7]) ? Number(fields[7]) : undefined
  }
  return undefined
}

function withExpiry(account: LoginAccount, expiresOnDay: number | undefined): LoginAccount {
  return expiresOnDay === undefined ? account : { ...account, expiresOnDay }
}

/** Whether `account` has expired by `nowMs`, as sshd judges it: from its expiration day on. */
export function accountExpired(account: LoginAccount, nowMs: number): boolean {
  return account.expiresOnDay !== undefined && Math.floor(nowMs / 86_400_000) >= account.expiresOnDay
}

/**
 * The account `login` names: /etc/passwd first, read by the agent itself (no process, the
 * accounts of a device), then NSS through `getent`, which asks every source that
 * /etc/nsswitch.conf lists, as getpwnam(3) would: the account is the one entry NSS gives,
 * under the name it gives (SSSD may answer `alice` with `alice@corp`, a case-insensitive
 * directory `Alice` with `alice`), with its groups and shadow entry looked up by that name.
 * Undefined when no source knows it, when the system has no `getent` (busybox devices:
 * /etc/passwd is all they have), or when any of the lookups failed or they all took longer
 * than `timeoutMs` together, which `onLookupError` hears about: a directory that does not
 * answer lets no one in, as sshd's initgroups and shadow checks fail then.
 */
export async function findLogin(login: string, options: { timeoutMs?: number; getent?: string; onLookupError?: (error: Error) => void } = {}): Promise<LoginAccount | undefined> {
  const local = lookupPasswd(login)
  if (local) return local
  // getent's output is colon- and line-separated: such a name could only be misread. An
  // all-digit name would be looked up as a uid.
  if (login === '' || /[:\n\r\0]/.test(login) || /^\d+$/.test(login)) return undefined
  const getent = options.getent ?? 'getent'
  const deadline = performance.now() + (options.timeoutMs ?? NSS_LOOKUP_TIMEOUT_MS)
  const lookup = (database: string, name: string) => getentLines(getent, [database, '--', name], Math.max(1, Math.round(deadline - performance.now())))
  try {
    const passwd = await lookup('passwd', login)
    const lines = (passwd ?? '').split('\n').filter((line) => line !== '')
    const name = lines.length === 1 ? lines[0].split(':')[0] : ''
    const account = name === '' ? undefined : parsePasswdLine(lines[0], name)
    if (!account) return undefined
    // Many sources give no shadow entries to anyone (exit 2): none is judged then.
    const [groups, shadow] = await Promise.all([lookup('initgroups', account.name), lookup('shadow', account.name)])
    return withExpiry({ ...account, groups: parseInitgroups(groups ?? '', account.gid) }, shadowExpiry(shadow ?? '', account.name))
  } catch (error) {
    options.onLookupError?.(error as Error)
    return undefined
  }
}

/** One passwd(5) line's account if it is `login`'s; null for another login's line or one that is not an account. */
function parsePasswdLine(line: string, login: string): LoginAccount | undefined | null {
  const fields = line.split(':')
  if (fields.length !== 7 || fields[0] !== login) return null
  if (!/^\d+$/.test(fields[2]) || !/^\d+$/.test(fields[3])) return undefined
  return { name: login, uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] || '/', shell: fields[6] || '/bin/sh' }
}

/** `getent initgroups` prints the name, then the IDs of its groups: those but the primary one, sorted. */
function parseInitgroups(text: string, gid: number): number[] {
  const ids = text
    .trim()
    .split(/\s+/)
    .slice(1)
    .filter((field) => /^\d+$/.test(field))
    .map(Number)
  return [...new Set(ids)].filter((id) => id !== gid).sort((a, b) => a - b)
}

/**
 * getent's output; undefined when it found nothing (exit 2) or is not on this system; an
 * error when it failed otherwise or ran past `timeoutMs`.
 */
function getentLines(getent: string, args: string[], timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    execFile(getent, args, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' } }, (error, stdout, stderr) => {
      if (!error) return resolve(stdout)
      // ENOENT: no getent here; 2: it found nothing.
      if (error.code === 'ENOENT' || error.code === 2) return resolve(undefined)
      if (error.killed) return reject(new Error(`getent ${args[0]} took longer than ${timeoutMs} ms`))
      reject(new Error(`getent ${args[0]} failed: ${stderr.trim() || error.message}`))
    })
  })
}
