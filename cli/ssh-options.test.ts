// What a real OpenSSH client makes of the paths and ProxyCommand that Warren hands it, on its
// command line (`warren ssh`) and in the ssh_config that `auth sign` and `login` write:
// each the path or word as it is, whatever it holds, or refused with the reason.

import { spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { sshConfig } from './credentials-files.ts'
import { HOST_KEYS_DIR } from './host-keys.ts'
import { PROFILE_FILES } from './profile.ts'
import { opensshArgs } from './ssh.ts'
import { sshPath, sshWord } from './ssh-options.ts'

const HOSTILE = [
  "o'brien dir",
  '50%off',
  '%r%h%%',
  'a"b',
  'back\\slash',
  'ends\\',
  "a\\'b",
  'a\\"b',
  '#hash',
  ' lead and trail ',
  'tab\there',
  'é ü 日本',
  '$(touch PWNED) `id` $HOME',
  '~tilde',
  'a=b',
]

const root = mkdtempSync(join(tmpdir(), 'warren-ssh-options-'))
chmodSync(root, 0o700)
const bin = join(root, 'bin')
mkdirSync(bin)
// warren as a ProxyCommand runs it: its arguments, NUL-separated, to $OUT.
writeFileSync(join(bin, 'warren'), `#!/bin/sh\nprintf '%s\\0' "$@" > "$OUT"\nexit 1\n`, { mode: 0o755 })

/** ssh's log text as it was before strnvis: \\ and \ooo. */
function unvis(text: string): string {
  return Buffer.from(
    text.replace(/\\(\\|[0-7]{3})/g, (_, code: string) => (code === '\\' ? '\\' : String.fromCharCode(Number.parseInt(code, 8)))),
    'latin1',
  ).toString('utf8')
}

interface Seen {
  identityFile: string
  certificateFile: string
  userKnownHostsFile: string
  proxyArgs: string[]
}

/** Runs ssh toward u@node-1 (its ProxyCommand fails at once) and reads what it made of the options. */
function whatSshSees(args: string[], home = process.env.HOME ?? '/'): Seen {
  const out = join(root, 'proxy-args')
  writeFileSync(out, '')
  const env = { PATH: `${bin}:${process.env.PATH}`, HOME: home, SHELL: '/bin/sh', OUT: out }
  const run = spawnSync('ssh', ['-vvv', '-o', 'BatchMode=yes', ...args, 'u@node-1', 'true'], { env, encoding: 'utf8', cwd: root })
  const log = run.stderr
  const file = (what: string) => unvis(new RegExp(`^debug1: ${what} file (.*) type -?\\d+$`, 'm').exec(log)?.[1] ?? `no ${what} file in: ${log}`)
  const known = /^debug3: expanded UserKnownHostsFile '.*' -> '(.*)'$/m.exec(log)?.[1]
  return {
    identityFile: file('identity'),
    certificateFile: file('certificate'),
    userKnownHostsFile: known === undefined ? `no UserKnownHostsFile in: ${log}` : unvis(known),
    proxyArgs: readFileSync(out, 'utf8').split('\0').slice(0, -1),
  }
}

t.test('warren ssh: every path reaches ssh as it is', async (t) => {
  for (const name of HOSTILE) {
    const dir = join(root, 'cmdline', name)
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const args = opensshArgs({ proxy: '127.0.0.1:3080' }, dir, [], [join(bin, 'warren')]).slice(2)
    t.same(
      whatSshSees(args),
      {
        identityFile: join(dir, PROFILE_FILES.sshKey),
        certificateFile: join(dir, PROFILE_FILES.sshCert),
        userKnownHostsFile: join(dir, HOST_KEYS_DIR, 'node-1'),
        proxyArgs: ['proxy', 'ssh', `--identity=${dir}`, '--proxy=127.0.0.1:3080', 'u@node-1:22'],
      },
      JSON.stringify(name),
    )
  }
})

t.test('the ssh_config that auth sign writes: every path reaches ssh as it is', async (t) => {
  const home = join(root, 'home dir')
  for (const name of HOSTILE) {
    for (const [dir, identity] of [
      [join(root, 'config', name), join(root, 'config', name)],
      [join(home, name), `~/${name}`],
    ]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      const previous = process.env.HOME
      process.env.HOME = home
      const config = (() => {
        try {
          return sshConfig(dir, 'lab', '127.0.0.1:3080', false)
        } finally {
          process.env.HOME = previous
        }
      })()
      writeFileSync(join(dir, PROFILE_FILES.sshConfig), config)
      t.same(
        whatSshSees(['-F', join(dir, PROFILE_FILES.sshConfig)], home),
        {
          identityFile: join(dir, PROFILE_FILES.sshKey),
          certificateFile: join(dir, PROFILE_FILES.sshCert),
          userKnownHostsFile: join(dir, HOST_KEYS_DIR, 'node-1'),
          proxyArgs: ['proxy', 'ssh', `--identity=${identity}`, '--proxy=127.0.0.1:3080', 'u@node-1:22'],
        },
        JSON.stringify(dir),
      )
    }
  }
})

t.test('ssh -G reads each word back as it was', async (t) => {
  for (const name of HOSTILE) {
    const path = join('/tmp', name, 'known_hosts')
    const run = spawnSync('ssh', ['-G', '-F', '/dev/null', '-o', `UserKnownHostsFile=${sshWord(sshPath(path))}`, 'node-1'], { encoding: 'utf8' })
    t.equal(/^userknownhostsfile (.*)$/m.exec(run.stdout)?.[1], path, JSON.stringify(name), { stderr: run.stderr })
  }
})

t.test('a path OpenSSH cannot be told is refused, named, with what to do', async (t) => {
  for (const [path, why] of [
    // biome-ignore lint/suspicious/noTemplateCurlyInString: OpenSSH's syntax for a variable, in a path
    ['/home/u/${HOME}/.warren', /"\$\{", which OpenSSH reads as an environment variable/],
    ['/home/u/two\nlines', /a line break/],
  ] as const) {
    t.throws(() => sshPath(path), { message: new RegExp(`${JSON.stringify(path).replace(/[$\\{}.]/g, '\\$&')}`) }, JSON.stringify(path))
    t.throws(() => sshPath(path), { message: why })
    t.throws(() => sshPath(path), { message: /--identity=DIR/ })
  }
})
