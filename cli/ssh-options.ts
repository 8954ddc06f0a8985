// Values that Warren hands OpenSSH, on its command line (`ssh -o`) and in the ssh_config
// that `auth sign` and `login` write: both go through readconf's tokeniser (argv_split in
// misc.c), which splits at blanks, takes '…' and "…" as quotes, a backslash before ', ", \ or
// a blank as an escape, and a # that starts a word as a comment. IdentityFile,
// CertificateFile and UserKnownHostsFile then expand %-tokens and ${VARIABLE}s, and a
// ProxyCommand %-tokens before its shell runs it. Each value is quoted here so that what
// OpenSSH makes of it is the path or word as it is, whatever it holds, or refused with the
// reason when OpenSSH cannot be told it.

import { WarrenError } from '../shared/errors.ts'
import { shellQuote } from '../shared/shell-quote.ts'
import { fdpassProxyCommand } from './ssh-stream.ts'

/** Text that OpenSSH takes as it is where it expands %-tokens: each % doubled. */
export function sshLiteral(text: string): string {
  return text.replaceAll('%', '%%')
}

/**
 * A path for IdentityFile, CertificateFile or UserKnownHostsFile, as those expand it: its %
 * doubled. OpenSSH has no escape for a "${", which it reads as an environment variable, nor
 * can an ssh_config line hold a line break: a path with either is refused, named.
 */
export function sshPath(path: string): string {
  if (path.includes('${') || /[\n\0]/.test(path)) {
    const what = path.includes('${') ? '"${", which OpenSSH reads as an environment variable' : 'a line break'
    throw new WarrenError(
      `OpenSSH cannot be given the path ${JSON.stringify(path)}: it holds ${what}, and OpenSSH has no way to escape it; use credentials in a directory whose path has none (--identity=DIR, or --out=DIR when signing)`,
    )
  }
  return sshLiteral(path)
}

/**
 * `value` as one word of an ssh_config line or `ssh -o`: as it is when the tokeniser leaves
 * it so, else in double quotes with each backslash or double quote in it escaped. What
 * OpenSSH expands in it is up to the caller (sshPath).
 */
export function sshWord(value: string): string {
  if (/[\n\0]/.test(value)) throw new WarrenError(`OpenSSH cannot be given ${JSON.stringify(value)}: an ssh_config line cannot hold a line break`)
  return /^[\w@%+=:,./{}$~-]+$/.test(value) ? value : `"${value.replace(/[\\"]/g, '\\$&')}"`
}

/**
 * A word for the shell that runs a ProxyCommand, as shellQuote makes it, that readconf's
 * tokeniser also reads through: it would take a backslash inside single quotes before a
 * quote as an escape and find the quotes unbalanced ("invalid quotes"), so each backslash is
 * "\\" (a backslash to the shell) between single-quoted pieces. Its % are not doubled yet.
 */
export function proxyCommandWord(word: string): string {
  if (/[\n\0]/.test(word)) throw new WarrenError(`OpenSSH cannot be given ${JSON.stringify(word)}: an ssh_config line cannot hold a line break`)
  if (!word.includes('\\')) return shellQuote(word)
  return word
    .split('\\')
    .map((piece) => (piece === '' ? '' : shellQuote(piece)))
    .join('"\\\\"')
}

/**
 * The ProxyCommand with which OpenSSH runs `warren` (its command words) as the user of `dir`,
 * through `proxy` when given: what OpenSSH hands its shell once it has put the user, node and
 * port in for %r, %h and %p. Each word is quoted for that shell and its % doubled, whatever
 * it holds. With `fdpass` the command hands ssh its connection (ProxyUseFdpass).
 */
export function proxyCommand(warren: string[], dir: string, proxy: string | undefined, fdpass: boolean): string {
  const program = sshLiteral(warren.map(proxyCommandWord).join(' '))
  const flags = sshLiteral([`--identity=${dir}`, ...(proxy ? [`--proxy=${proxy}`] : [])].map(proxyCommandWord).join(' '))
  return fdpass ? fdpassProxyCommand(program, `${flags} %r@%h:%p`) : `${program} proxy ssh ${flags} %r@%h:%p`
}
