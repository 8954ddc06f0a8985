// The variables a device's administrator sets for every login: /etc/environment (an
// http_proxy behind a company's proxy, a PATH) and /etc/default/locale (LANG), which sshd's
// sessions get through pam_env on Debian-based systems. A node's sessions get them too.

import { readFileSync } from 'node:fs'

/** Where pam_env reads them on Debian-based systems (readenv, and envfile=/etc/default/locale), in its order. */
export const SYSTEM_ENVIRONMENT_FILES = ['/etc/environment', '/etc/default/locale']

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * The variables of `files`, a later file's winning, read as pam_env reads them: a line is
 * `NAME=value` (an `export ` before the name allowed), cut at its first `#`; a value that
 * starts with a quote loses its opening and closing quotes; blank lines and lines that are
 * no assignment are skipped. Unlike pam_env, blanks before a cut comment are dropped too
 * (`http_proxy=http://proxy:3128 # site` is the address, not the address and a blank). A
 * file that cannot be read gives none.
 */
export function systemEnvironment(files: readonly string[] = SYSTEM_ENVIRONMENT_FILES): Record<string, string> {
  // A Map, then entries: a name like __proto__ is a variable like any other.
  const variables = new Map<string, string>()
  for (const file of files) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch {
      continue
    }
    for (const raw of text.split('\n')) {
      const hash = raw.indexOf('#')
      const line = (hash < 0 ? raw : raw.slice(0, hash)).trim().replace(/^export\s+/, '')
      const equals = line.indexOf('=')
      if (equals <= 0 || !NAME.test(line.slice(0, equals))) continue
      variables.set(line.slice(0, equals), unquote(line.slice(equals + 1)))
    }
  }
  return Object.fromEntries(variables)
}

/** pam_env's "not too smart" quotes: after an opening quote, every quote character goes but one inside that is not the last. */
function unquote(value: string): string {
  if (value[0] !== '"' && value[0] !== "'") return value
  let out = ''
  for (let i = 1; i < value.length; i++) {
    const quote = value[i] === '"' || value[i] === "'"
    if (!quote || i < value.length - 1) out += value[i]
  }
  return out
}
