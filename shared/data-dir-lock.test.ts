// The data dir lock between real processes: a second one is refused naming the first, a
// lock whose process died or whose PID was reused is taken over, a process keeps its lock
// across execve, and of many processes trying at the same instant exactly one wins.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import { LOCK_FILE, type LockHolder, lockHolder } from './data-dir-lock.ts'

const fixture = join(import.meta.dirname, '../test/fixtures/data-dir-lock-holder.ts')
const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
/** As the lock names it: without dashes, so that the lock's target fits in its inode. */
const lockBootId = bootId.replaceAll('-', '')
const NOBODY = 65534
/** Runs its arguments as nobody, with a /proc that shows only nobody's processes, as systemd's ProtectProc=invisible does. */
const HIDDEN_PROC_AS_NOBODY = [
  'unshare',
  '--mount',
  '--propagation',
  'private',
  'sh',
  '-c',
  `mount -t proc -o hidepid=invisible proc /proc && exec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups "$@"`,
  'sh',
]

interface Outcome {
  locked: boolean
  pid: number
  image?: number
  error?: string
}

/** A fixture process on `dir`; `outcomes` yields each JSON line it prints. */
class Locker {
  readonly child: ChildProcess
  readonly exited: Promise<number | null>
  private readonly lines: AsyncIterator<string>
  /** Resolves once the process has loaded the lock's code and waits for its cue. */
  readonly ready: Promise<unknown>

  /** `wrapper`: a command that runs the fixture's command line, given as its arguments. */
  constructor(dir: string, mode?: 'reexec', wrapper: string[] = []) {
    const [command, ...args] = [...wrapper, process.execPath, fixture, dir, ...(mode ? [mode] : [])]
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] })
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)))
    this.lines = createInterface({ input: this.child.stdout! })[Symbol.asyncIterator]()
    this.ready = this.lines.next()
  }

  /** Tells it to lock, at once or at the instant `at` (ms since the epoch). */
  go(at = 0): void {
    this.child.stdin!.write(`${at}\n`)
  }

  async outcome(): Promise<Outcome> {
    await this.ready
    const { value, done } = await this.lines.next()
    if (done) throw new Error(`fixture ${this.child.pid} ended without an outcome`)
    return JSON.parse(value)
  }

  /** Locks now and returns the outcome. */
  async lock(): Promise<Outcome> {
    this.go()
    return this.outcome()
  }

  /** Ends the process cleanly (standard input closes) and waits for it. */
  async release(): Promise<number | null> {
    this.child.stdin!.end()
    return this.exited
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL')
    await this.exited
  }
}

function dataDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'warren-lock-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function holder(dir: string): LockHolder {
  const found = lockHolder(dir)
  if (!found) throw new Error(`no lock holder in ${dir}`)
  return found
}

/** The start time (field 22 of /proc/PID/stat) of a running process. */
function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
}

t.test('a second process is refused naming the first; a clean exit releases the lock', async (t) => {
  const dir = dataDir(t)
  const first = new Locker(dir)
  t.teardown(() => first.kill())
  t.match(await first.lock(), { locked: true })
  t.same(holder(dir), { pid: first.child.pid, start_time: startTime(first.child.pid!), boot_id: lockBootId }, 'the lock names the first process')

  const second = new Locker(dir)
  t.same(await second.lock(), { locked: false, pid: second.child.pid, error: `data dir ${dir} is in use by process ${first.child.pid}` })
  t.equal(await second.exited, 1)
  t.equal(holder(dir).pid, first.child.pid, 'the lock is unchanged')
  t.same(readdirSync(dir), [LOCK_FILE], 'and nothing else was written')

  t.equal(await first.release(), 0)
  t.same(readdirSync(dir), [], 'a clean exit removes the lock file')
  const third = new Locker(dir)
  t.teardown(() => third.kill())
  t.match(await third.lock(), { locked: true }, 'and the next process locks the dir')
})

t.test('a data dir created for the lock is removed again when nothing else was written into it', async (t) => {
  const dir = join(dataDir(t), 'new', 'data')
  const locker = new Locker(dir)
  t.match(await locker.lock(), { locked: true })
  t.ok(lockHolder(dir), 'the lock is there')
  await locker.release()
  t.notOk(existsSync(join(dir, '..')), 'the directories it created are gone')
})

t.test('a lock left by a SIGKILLed process is taken over', async (t) => {
  const dir = dataDir(t)
  const first = new Locker(dir)
  t.match(await first.lock(), { locked: true })
  await first.kill()
  t.equal(holder(dir).pid, first.child.pid, 'SIGKILL left the lock behind')
  const second = new Locker(dir)
  t.teardown(() => second.kill())
  t.match(await second.lock(), { locked: true })
  t.equal(holder(dir).pid, second.child.pid)
})

t.test('a lock whose PID is alive but another process is taken over', async (t) => {
  // This test process is alive; the lock says its PID started at another time (PID reuse),
  // or in another boot with this very start time, or it is a file no process wrote whole.
  const cases: [string, string][] = [
    ['another start time', JSON.stringify({ pid: process.pid, start_time: '1', boot_id: bootId })],
    ['another boot', JSON.stringify({ pid: process.pid, start_time: startTime(process.pid), boot_id: '00000000-0000-0000-0000-000000000000' })],
    ['a truncated file', ''],
    ['not a lock', '{"pid": "1"}'],
  ]
  for (const [name, content] of cases) {
    const dir = dataDir(t)
    writeFileSync(join(dir, LOCK_FILE), content)
    const locker = new Locker(dir)
    t.match(await locker.lock(), { locked: true }, name)
    t.equal(holder(dir).pid, locker.child.pid, `${name}: the lock names the new process`)
    t.same(readdirSync(dir), [LOCK_FILE], `${name}: no guard file is left`)
    await locker.release()
  }
  const dir = dataDir(t)
  writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: process.pid, start_time: startTime(process.pid), boot_id: bootId }))
  const refused = new Locker(dir)
  t.match(await refused.lock(), { locked: false, error: `data dir ${dir} is in use by process ${process.pid}` }, 'a lock that names this test process exactly is honoured')
})

t.test('a guard left by a process that died while taking a lock over does not block the next one', async (t) => {
  const dir = dataDir(t)
  const first = new Locker(dir)
  t.match(await first.lock(), { locked: true })
  await first.kill()
  const stale = readlinkSync(join(dir, LOCK_FILE), 'utf8')
  const { createHash } = await import('node:crypto')
  const guard = `${LOCK_FILE}.${createHash('sha256').update(stale).digest('hex').slice(0, 16)}`
  writeFileSync(join(dir, guard), JSON.stringify({ pid: first.child.pid, start_time: startTime(process.pid), boot_id: bootId }))
  const second = new Locker(dir)
  t.teardown(() => second.kill())
  t.match(await second.lock(), { locked: true })
  t.equal(holder(dir).pid, second.child.pid)
  t.same(readdirSync(dir), [LOCK_FILE], 'the dead guard is gone')
})

t.test('a process keeps its lock when it replaces its image (execve)', async (t) => {
  const dir = dataDir(t)
  const locker = new Locker(dir, 'reexec')
  t.teardown(() => locker.kill())
  t.match(await locker.lock(), { locked: true, image: 1 })
  t.same(await locker.outcome(), { locked: true, pid: locker.child.pid, image: 2 }, 'the new image finds its own lock and keeps it')
  const other = new Locker(dir)
  t.match(await other.lock(), { locked: false, error: `data dir ${dir} is in use by process ${locker.child.pid}` })
  t.equal(await locker.release(), 0)
  t.same(readdirSync(dir), [], 'the new image releases it on exit')
})

t.test(
  "where /proc hides other users' processes (systemd's ProtectProc=invisible), a hidden holder is still honoured",
  { skip: process.getuid?.() !== 0 && 'needs root for a mount namespace and another user' },
  async (t) => {
    const dir = dataDir(t)
    chownSync(dir, NOBODY, NOBODY)
    const writeLock = (pid: number, start: string) => {
      writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid, start_time: start, boot_id: bootId }))
      chownSync(join(dir, LOCK_FILE), NOBODY, NOBODY)
    }
    // This test process runs as root: invisible to nobody, but alive.
    writeLock(process.pid, startTime(process.pid))
    const refused = new Locker(dir, undefined, HIDDEN_PROC_AS_NOBODY)
    t.teardown(() => refused.kill())
    t.match(await refused.lock(), { locked: false, error: `data dir ${dir} is in use by process ${process.pid}` })
    t.equal(holder(dir).pid, process.pid, 'the lock is unchanged')

    // A process that has ended is taken over there too.
    const ended = spawnSync('true').pid!
    writeLock(ended, '1')
    const locker = new Locker(dir, undefined, HIDDEN_PROC_AS_NOBODY)
    t.teardown(() => locker.kill())
    t.match(await locker.lock(), { locked: true })
  },
)

t.test('processes locking at the same instant: exactly one wins, on a fresh dir and over a stale lock', async (t) => {
  const racers = 3
  for (const stale of [false, true]) {
    for (let round = 0; round < 10; round++) {
      // A fresh dir does not exist yet: the racers create it too.
      const dir = stale ? dataDir(t) : join(dataDir(t), 'data')
      if (stale) writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: process.pid, start_time: '1', boot_id: bootId }))
      const lockers = Array.from({ length: racers }, () => new Locker(dir))
      // All are told to lock at one instant, once every one is ready.
      await Promise.all(lockers.map((locker) => locker.ready))
      const at = Date.now() + 20
      for (const locker of lockers) locker.go(at)
      const outcomes = await Promise.all(lockers.map((locker) => locker.outcome()))
      const winners = outcomes.filter((outcome) => outcome.locked)
      const label = `${stale ? 'stale lock' : 'fresh dir'}, round ${round + 1}`
      t.equal(winners.length, 1, `${label}: one winner`)
      const winner = winners[0]?.pid
      t.equal(holder(dir).pid, winner, `${label}: the lock names it`)
      t.same(
        outcomes.filter((o) => !o.locked).map((o) => o.error),
        Array(racers - 1).fill(`data dir ${dir} is in use by process ${winner}`),
        `${label}: the others are refused, naming it`,
      )
      t.same(readdirSync(dir), [LOCK_FILE], `${label}: nothing but the lock is left`)
      await Promise.all(lockers.map((locker) => locker.release()))
    }
  }
})
