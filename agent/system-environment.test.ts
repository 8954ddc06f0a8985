// /etc/environment and /etc/default/locale as pam_env reads them.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../test/helpers/cluster.ts'
import { systemEnvironment } from './system-environment.ts'

t.test('NAME=value lines, quotes taken off, comments (also after a value) and blank lines skipped, a later file winning', async (t) => {
  const dir = tempDir()
  const environment = join(dir, 'environment')
  const locale = join(dir, 'locale')
  writeFileSync(
    environment,
    [
      '# proxies for the whole device',
      'http_proxy="http://proxy.example:3128"',
      "  export NO_PROXY='localhost,127.0.0.1'",
      '',
      'LANG=C',
      'EMPTY=',
      'KEEP="half quoted',
      'not a variable',
      '1BAD=x',
      '=x',
      '__proto__=plain',
      'WINDOWS=crlf\r',
      'PATH="/usr/local/bin:/usr/bin:/bin" # site tools',
      'http_proxy_backup=http://proxy.example:3128 # the old one',
      'INNER="say "hi" twice"',
    ].join('\n'),
  )
  writeFileSync(locale, 'LANG=en_GB.UTF-8\n')
  const variables = systemEnvironment([environment, join(dir, 'absent'), locale])
  t.same(variables, {
    http_proxy: 'http://proxy.example:3128',
    NO_PROXY: 'localhost,127.0.0.1',
    LANG: 'en_GB.UTF-8',
    EMPTY: '',
    KEEP: 'half quoted',
    ['__proto__']: 'plain',
    WINDOWS: 'crlf',
    PATH: '/usr/local/bin:/usr/bin:/bin',
    http_proxy_backup: 'http://proxy.example:3128',
    INNER: 'say "hi" twice',
  })
  t.equal(Object.getPrototypeOf(variables), Object.prototype, '__proto__ is a variable, not the prototype')
})

t.test('no file, no variables', async (t) => {
  t.same(systemEnvironment([join(tempDir(), 'absent')]), {})
})
