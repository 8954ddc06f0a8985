// shellQuote: every word comes out of a POSIX shell (bash, and sh where it is another) as it
// went in, and a word no shell changes stays bare.

import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { shellQuote } from './shell-quote.ts'

const HOSTILE = [
  '~',
  '~root',
  '~/x',
  'home=~',
  'path=a:~',
  'a:~',
  '=ls',
  '#comment',
  'a#b',
  '*',
  'a?',
  '[ab]',
  '{a,b}',
  '$(touch PWNED)',
  '`touch PWNED`',
  '$HOME',
  "o'brien",
  "''",
  'a b',
  ' spaced ',
  'a\nb',
  'tab\there',
  '!x',
  'a;b',
  'a|b',
  'a&b',
  '<x',
  '>x',
  '\\',
  '"',
  '',
  '-',
  '--auth-server=evil.example:3025',
]

t.test('what a shell would change is quoted, and comes out as it went in', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'warren-quote-'))
  // A file that a glob would expand to.
  writeFileSync(join(cwd, 'ab'), '')
  for (const shell of ['bash', 'sh']) {
    const script = `printf '%s\\0' ${HOSTILE.map(shellQuote).join(' ')}`
    const result = spawnSync(shell, ['-c', script], { cwd, env: { PATH: process.env.PATH, HOME: '/home/warren-test' }, encoding: 'utf8' })
    t.equal(result.status, 0, `${shell}: ${result.stderr}`)
    t.same(result.stdout.split('\0').slice(0, -1), HOSTILE, `${shell} gives back each word`)
  }
  t.same(readdirSync(cwd), ['ab'], 'and runs nothing')
  for (const word of ['~', 'home=~', 'path=a:~', '=ls', '#comment']) t.not(shellQuote(word), word, `${JSON.stringify(word)} is quoted`)
})

t.test('a word no shell changes stays bare', async (t) => {
  for (const word of ['warrenctl', '--remove=site,owner', '--ttl=1m30s', 'env=prod', 'role/lab', 'user@host:22', '50%', 'a+b', '-', 'a=b=c', 'x_y']) {
    t.equal(shellQuote(word), word)
  }
})
