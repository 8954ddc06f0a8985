// What the copy benchmark does with stock OpenSSH on each path: copy a file with scp and
// check what arrived, open a session, and time 64-byte round trips through a remote `cat`.

import { execFile, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, createReadStream, openSync, writeSync } from 'node:fs'
import { Duplex } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { type LatencyResult, latencyOf, roundTripTimes } from './measure.ts'

/** Writes `bytes` of random data (nothing for a cipher or compression to shortcut) and returns its sha256. */
export function randomFile(path: string, bytes: number): string {
  const hash = createHash('sha256')
  const fd = openSync(path, 'w', 0o600)
  try {
    for (let written = 0; written < bytes; ) {
      const chunk = randomBytes(Math.min(4 << 20, bytes - written))
      hash.update(chunk)
      writeSync(fd, chunk)
      written += chunk.length
    }
  } finally {
    closeSync(fd)
  }
  return hash.digest('hex')
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  await pipeline(createReadStream(path), hash)
  return hash.digest('hex')
}

/** Runs a command to its end and returns how long it took in seconds; a failure throws with its standard error. */
export function timed(command: string, args: string[], timeoutMs = 30 * 60_000): Promise<number> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} failed (${error.code ?? error.signal}): ${stderr}`))
      else resolve((performance.now() - started) / 1000)
    })
  })
}

/**
 * An interactive session as a user has one: `ssh -tt` (a pseudo-terminal on the server)
 * running `cat` with the terminal raw and silent, so each 64-byte write comes back as it
 * was sent; a round trip is from the write to the last byte of its echo. The session stays
 * open for round trips in batches until it is closed.
 */
export interface InteractiveSession {
  /** `count` round trips, one at a time; each one's time in µs. */
  roundTrips(count: number): Promise<Float64Array>
  close(): Promise<void>
}

export async function openInteractive(sshArgs: string[]): Promise<InteractiveSession> {
  const ssh = spawn('ssh', ['-tt', '-e', 'none', ...sshArgs, 'stty raw -echo && echo ready && exec cat'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  ssh.stderr.on('data', (data) => (stderr += data))
  const exited = new Promise((resolve) => ssh.once('exit', resolve))
  const session = Duplex.from({ readable: ssh.stdout, writable: ssh.stdin })
  const close = async () => {
    // Ending the session is not an error of the measurement.
    session.on('error', () => {})
    session.destroy()
    ssh.kill('SIGTERM')
    await exited
  }
  try {
    await new Promise<void>((resolve, reject) => {
      let seen = ''
      const onData = (data: Buffer) => {
        seen += data.toString('latin1')
        if (!seen.includes('ready\n')) return
        session.off('data', onData)
        resolve()
      }
      session.on('data', onData)
      ssh.once('exit', (code) => reject(new Error(`ssh ${sshArgs.join(' ')} exited (${code}) before the session was ready: ${stderr}`)))
    })
  } catch (error) {
    await close()
    throw error
  }
  return { roundTrips: (count) => roundTripTimes(session, count), close }
}

/** `count` round trips in a session of their own (see openInteractive). */
export async function interactiveRoundTrips(sshArgs: string[], count: number): Promise<LatencyResult> {
  const session = await openInteractive(sshArgs)
  try {
    return latencyOf(await session.roundTrips(count))
  } finally {
    await session.close()
  }
}
