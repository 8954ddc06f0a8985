// The ProxyCommand of `warren ssh`: OpenSSH puts in %r, %h and %p and hands the rest to a
// shell, which must give warren the credentials dir and proxy as they are, whatever they hold.

import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { proxyCommand } from './ssh-options.ts'

/** What OpenSSH does with a ProxyCommand's tokens (sshconnect.c), for login root at pi-1:22; an unknown one is fatal. */
function expandTokens(command: string): string {
  const tokens: Record<string, string> = { '%': '%', r: 'root', h: 'pi-1', p: '22' }
  return command.replace(/%(.)/g, (_, token: string) => {
    if (tokens[token] === undefined) throw new Error(`percent_expand: unknown key %${token}`)
    return tokens[token]
  })
}

/** The arguments that warren gets when `sh` runs `command`, warren and env being functions that print them. */
function warrenArgs(command: string, cwd: string): string[] {
  const script = `warren() { printf '%s\\0' "$@"; }\nenv() { shift; "$@"; }\n${command}\n`
  const result = spawnSync('sh', ['-c', script], { cwd, env: { PATH: process.env.PATH, HOME: '/home/warren-test' }, encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`sh failed on ${JSON.stringify(command)}: ${result.stderr}`)
  return result.stdout.split('\0').slice(0, -1)
}

t.test('the credentials dir and proxy reach warren as they are', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'warren-proxy-command-'))
  for (const dir of ["/home/o'brien/.warren", '/tmp/50%off dir', 'C:\\odd\\', "/tmp/a\\'b", '/tmp/$(touch PWNED)/`id`', '/tmp/~x;y', '/tmp/%r%h']) {
    for (const fdpass of [false, true]) {
      const command = proxyCommand(['warren'], dir, 'proxy.example.com:3080', fdpass)
      t.same(
        warrenArgs(expandTokens(command), cwd),
        ['proxy', 'ssh', ...(fdpass ? ['--fdpass'] : []), `--identity=${dir}`, '--proxy=proxy.example.com:3080', 'root@pi-1:22'],
        `${JSON.stringify(dir)}${fdpass ? ', --fdpass' : ''}: ${command}`,
      )
    }
  }
  t.same(readdirSync(cwd), [], 'and nothing else runs')
  t.equal(proxyCommand(['/opt/50%/warren'], '/x', undefined, false), '/opt/50%%/warren proxy ssh --identity=/x %r@%h:%p', "a % of warren's own path too")
})
