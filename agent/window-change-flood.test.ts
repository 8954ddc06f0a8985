// A flood of window changes costs the node a few a second. Stock OpenSSH runs in a terminal
// of its own, which perl resizes without pause (an ioctl each millisecond); OpenSSH sends a
// window change for each resize it sees. The node applies them with `stty`, found on the
// agent's PATH, where a wrapper counts each one it runs, and records them. Whatever the
// flood, at most one a RESIZE_INTERVAL_MS is applied and recorded (counted against how long
// the flood took, however slow the machine), and the last size is the terminal's in the end.

import { spawn, spawnSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { once } from 'node:events'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { startTestSshServer, testSshUser } from '../test/helpers/node-ssh-server.ts'
import { until } from '../test/helpers/until.ts'
import { findPerl } from './pty.ts'
import { RESIZE_INTERVAL_MS } from './ssh-session.ts'

const perl = findPerl()
const cannot =
  process.getuid?.() !== 0 ? 'runs sessions as root' : spawnSync('ssh', ['-V']).status !== 0 ? 'needs the OpenSSH client' : !perl ? 'needs perl to resize the terminal' : undefined
t.setTimeout(180_000)

const dir = t.testdir()
const userCA = generateKeyPairSync('ed25519')
const hostKey = generateKeyPairSync('ed25519')
const user = testSshUser(dir, userCA.privateKey)
user.certify('mallory', { 'permit-pty': '' })
const log = createLogger('node', { level: 'error' })

// The agent's `stty`: the real one, each run written down first.
const wrappers = join(dir, 'bin')
const sttyRuns = join(dir, 'stty-runs')
mkdirSync(wrappers)
const realStty = spawnSync('sh', ['-c', 'command -v stty'], { encoding: 'utf8' }).stdout.trim()
writeFileSync(join(wrappers, 'stty'), `#!/bin/sh\necho "$*" >> '${sttyRuns}'\nexec '${realStty}' "$@"\n`)
chmodSync(join(wrappers, 'stty'), 0o755)
process.env.PATH = `${wrappers}:${process.env.PATH}`
/** The window changes the node applied: its `stty -F TTY rows R cols C` runs. */
const applied = () => (existsSync(sttyRuns) ? readFileSync(sttyRuns, 'utf8').split('\n') : []).filter((line) => line.startsWith('-F ')).length

/** Resizes the terminal `tty` `count` times a millisecond apart, then to 41 rows and 132 columns. */
const FLOOD = `open(my $t, '+<', $ARGV[0]) or die "$!";
sub size { my $size = pack('S4', $_[0], $_[1], 0, 0); ioctl($t, 0x5414, $size) or die "$!" }
for my $i (1 .. $ARGV[1]) { size(20 + $i % 20, 70 + $i % 50); select(undef, undef, undef, 0.001) }
size(41, 132);`

for (const mode of ['perl', 'script'] as const) {
  t.test(`a flood of window changes is applied and recorded a few times a second, the last size in the end (${mode})`, { skip: cannot }, async (t) => {
    writeFileSync(sttyRuns, '')
    const recordings = tempDir()
    const { port } = await startTestSshServer(t, {
      hostKey: hostKey.privateKey,
      userCA: userCA.publicKey,
      home: dir,
      log,
      knownHosts: user.knownHosts,
      perl: () => (mode === 'perl' ? perl : undefined),
      recordingDir: () => ({ dir: recordings }),
    })
    const ssh = ['ssh', ...user.sshArgs(port, '-t')].join(' ')
    // OpenSSH in a terminal of its own, whose name the client side writes down.
    const marker = join(dir, `tty-${mode}`)
    const client = spawn('script', ['-q', '-c', `tty > ${marker}; stty rows 20 cols 70; exec ${ssh}`, '/dev/null'], { stdio: 'pipe' })
    t.teardown(() => {
      client.kill('SIGKILL')
    })
    let output = ''
    client.stdout.on('data', (chunk: Buffer) => {
      output += chunk
    })
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
    const size = async (rows: number, cols: number) => {
      await until(
        `the size ${rows} ${cols}`,
        () => {
          client.stdin.write('stty size\n')
          return new RegExp(`^${rows} ${cols}\\r$`, 'm').test(output)
        },
        { timeoutMs: 60_000 },
      )
    }
    await size(20, 70)
    const before = applied()
    const localTty = readFileSync(marker, 'utf8').trim()

    const started = Date.now()
    // Not spawnSync: the node's SSH server runs in this process, and takes the changes as they come.
    const flood = spawn(perl!, ['-e', FLOOD, localTty, '1500'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let floodError = ''
    flood.stderr.on('data', (chunk: Buffer) => {
      floodError += chunk
    })
    const [status] = (await once(flood, 'close')) as [number | null]
    t.equal(status, 0, `the terminal resized 1500 times ${floodError}`)
    await size(41, 132)
    const took = Date.now() - started
    client.stdin.end('exit\n')
    await closed

    const most = 2 + Math.ceil(took / RESIZE_INTERVAL_MS)
    const runs = applied() - before
    t.ok(runs >= 1 && runs <= most, `${runs} window changes applied with stty, at most ${most} in the ${took} ms of the flood`)
    const cast = join(recordings, `${spawnSync('ls', [recordings], { encoding: 'utf8' }).stdout.trim()}`)
    const resizes = readFileSync(cast, 'utf8')
      .split('\n')
      .filter(Boolean)
      .slice(1)
      .map((line) => JSON.parse(line) as [number, string, string])
      .filter(([, kind]) => kind === 'r')
    t.ok(resizes.length <= most, `${resizes.length} window changes recorded, at most ${most}`)
    t.equal(resizes.at(-1)?.[2], '132x41', 'the last size is the last recorded')
  })
}
