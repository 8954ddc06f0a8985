// A throwaway OpenSSH server on loopback, the baseline the benchmarks measure Warren against:
// its own host key, a user key in its authorized_keys, root logins by key only, no PAM.
//
// Needs root (sshd) and Debian's openssh-server and openssh-client.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, tempDir } from '../../test/helpers/cluster.ts'

const SSHD = '/usr/sbin/sshd'

export interface Sshd {
  port: number
  /** The listening sshd; it forks a process or two per connection. */
  pid: number
  /** Its host's public key, for a known_hosts line. */
  hostKey: string
  /** The key its authorized_keys accepts. */
  userKey: string
  dir: string
  /** What sshd wrote on standard error (LogLevel ERROR). */
  log(): string
  stop(): Promise<void>
}

export interface SshdOptions {
  /** sshd's AllowTcpForwarding: `remote` for `ssh -R`, `yes` for `-L` and ProxyJump. */
  forwarding: 'yes' | 'remote' | 'no'
  /** sshd's `Subsystem sftp` (scp's default SFTP mode needs it). */
  sftpServer?: string
  /** A user key to accept; a fresh one otherwise. */
  userKey?: string
  /** Where it listens (127.0.0.1 by default), and the network namespace it runs in, if not this one. */
  listenAddress?: string
  netns?: string
}

export function sshdMissing(): string | undefined {
  if (!existsSync(SSHD)) return 'sshd is not installed (apt-get install openssh-server)'
  if (process.getuid?.() !== 0) return 'sshd must run as root'
  return undefined
}

export async function startSshd(options: SshdOptions): Promise<Sshd> {
  const dir = tempDir('warren-bench-sshd-')
  mkdirSync('/run/sshd', { recursive: true }) // sshd's privilege separation directory
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')])
  let userKey = options.userKey
  if (!userKey) {
    userKey = join(dir, 'user_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', userKey])
  }
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${userKey}.pub`), { mode: 0o644 })
  chmodSync(dir, 0o755) // sshd reads authorized_keys as the user logging in, which may not be root
  const port = await freePort()
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      `ListenAddress ${options.listenAddress ?? '127.0.0.1'}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PidFile none',
      'UsePAM no',
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      `AllowTcpForwarding ${options.forwarding}`,
      'GatewayPorts no',
      ...(options.sftpServer ? [`Subsystem sftp ${options.sftpServer}`] : []),
      'LogLevel ERROR',
      '',
    ].join('\n'),
  )
  const argv = [SSHD, '-D', '-e', '-f', join(dir, 'sshd_config'), '-h', join(dir, 'host_key')]
  const [command, ...args] = options.netns ? ['ip', 'netns', 'exec', options.netns, ...argv] : argv
  const sshd = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  sshd.stderr!.on('data', (data) => (log += data))
  const stop = () => stopProcess(sshd)
  try {
    await waitForPort(port, () => `sshd did not start: ${log}`, 10_000, options.listenAddress)
  } catch (error) {
    await stop()
    throw error
  }
  return { port, pid: sshd.pid!, hostKey: readFileSync(join(dir, 'host_key.pub'), 'utf8').trim(), userKey, dir, log: () => log, stop }
}

export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  await new Promise((resolve) => child.once('exit', resolve))
}

export async function waitForPort(port: number, why: () => string, timeoutMs = 10_000, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port }, () => {
        socket.destroy()
        resolve(true)
      })
      socket.on('error', () => resolve(false))
    })
    if (open) return
    await sleep(50)
  }
  throw new Error(why())
}
