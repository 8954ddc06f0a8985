// Child process for data-dir-lock.test.ts: locks the data dir given as argv[2] when a line
// arrives on standard input (it prints "ready" once it listens), prints the outcome as one JSON line, and holds the lock until
// standard input ends. A line holding a time (ms since the epoch) makes it wait for that
// instant first, spinning, so that several children try at the same moment.
// With argv[3] "reexec" it replaces itself once after locking (same PID, new image, as
// `warren start` does after joining) and locks again in the new image.
import { createInterface } from 'node:readline'
import { lockDataDir } from './data-dir-lock.ts'

const dir = process.argv[2]
if (dir === undefined) throw new Error('usage: data-dir-lock.fixture.ts <data dir> [reexec]')
const REEXECUTED = 'DATA_DIR_LOCK_FIXTURE_REEXECUTED'

function lock(): void {
  try {
    lockDataDir(dir)
    process.stdout.write(JSON.stringify({ locked: true, pid: process.pid, image: process.env[REEXECUTED] ? 2 : 1 }) + '\n')
  } catch (error) {
    process.stdout.write(JSON.stringify({ locked: false, pid: process.pid, error: (error as Error).message }) + '\n')
    process.exit(1)
  }
}

const input = createInterface({ input: process.stdin })
if (process.env[REEXECUTED]) {
  lock()
} else {
  input.once('line', (line) => {
    const at = Number(line)
    while (Date.now() < at) {}
    lock()
    if (process.argv[3] === 'reexec') {
      process.execve!(process.execPath, [process.argv0, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, [REEXECUTED]: '1' })
    }
  })
  process.stdout.write('ready\n')
}
