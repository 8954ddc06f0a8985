// The helpers the node starts as a login (`warren sftp-server`, `warren agent-socket`) are
// dispatched before warren's list of commands, but answer --help and -h as every command
// does: their usage and exit 0, without serving anything.

import { spawn } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'

const WARREN = join(import.meta.dirname, 'warren.ts')

/** SSH_FXP_INIT, version 3: what an SFTP client sends first (the server answers SSH_FXP_VERSION). */
const SFTP_INIT = Buffer.from([0, 0, 0, 5, 1, 0, 0, 0, 3])

function warren(args: string[], input: Buffer): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // With an IPC channel, as the node starts agent-socket.
    const child = spawn(process.execPath, [WARREN, ...args], { stdio: ['pipe', 'pipe', 'pipe', 'ipc'], timeout: 30_000 })
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (chunk) => (stdout += chunk))
    child.stderr?.on('data', (chunk) => (stderr += chunk))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin?.end(input)
  })
}

t.test('warren sftp-server and agent-socket: --help and -h print the usage and act not', async (t) => {
  for (const name of ['sftp-server', 'agent-socket']) {
    for (const argv of [
      [name, '--help'],
      [name, '-h'],
    ]) {
      const result = await warren(argv, SFTP_INIT)
      t.equal(result.code, 0, `warren ${argv.join(' ')}: ${result.stderr}`)
      t.ok(result.stdout.startsWith(`Usage: warren ${name} `), `warren ${argv.join(' ')} prints the usage`)
      t.match(result.stdout, /\nExample:\n {2}\S/)
      t.equal(result.stderr, '', 'no file operation reported, no error')
    }
  }
  const extra = await warren(['sftp-server', 'extra'], SFTP_INIT)
  t.equal(extra.code, 2, 'an argument the helper does not take is a usage error')
  t.match(extra.stderr, /^ERROR: unexpected argument "extra" for "warren sftp-server"/)
  t.equal(extra.stdout, '', 'no SFTP answer')
})

t.test('warren sftp-server without flags still serves SFTP on standard input', async (t) => {
  const result = await warren(['sftp-server'], SFTP_INIT)
  t.equal(result.code, 0, result.stderr)
  // SSH_FXP_VERSION (type 2) after the 4-byte length.
  t.equal(Buffer.from(result.stdout, 'latin1')[4], 2, 'the answer to SSH_FXP_INIT is SSH_FXP_VERSION')
})
