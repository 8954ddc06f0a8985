// The variables a device's administrator sets for every login: /etc/environment (an
// http_proxy behind a company's proxy, a PATH) and /etc/default/locale (LANG), which sshd's
// sessions get through pam_env on Debian-based systems. A node's sessions get them too.

import { readFileSync } from 'node:fs'

/** Where pam_env reads them on Debian-based systems (readenv, and envfile=/etc/default/locale), in its order. */
export const SYSTEM_ENVIRONMENT_FILES = ['/etc/environment', '/etc/default/locale']

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * The variables of `files`, a later file's winning: `NAME=value` lines (an `export ` before
 * the name allowed, a value in matching single or double quotes unquoted), `#` comments and
 * blank lines skipped, as pam_env reads them; a file that cannot be read gives none.
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
      const line = raw.trim().replace(/^export\s+/, '')
      if (line === '' || line.startsWith('#')) continue
      const equals = line.indexOf('=')
      if (equals <= 0 || !NAME.test(line.slice(0, equals))) continue
      let value = line.slice(equals + 1)
      if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) value = value.slice(1, -1)
      variables.set(line.slice(0, equals), value)
    }
  }
  return Object.fromEntries(variables)
}
