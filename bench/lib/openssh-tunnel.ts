// The OpenSSH reverse tunnel that Warren is compared with: a throwaway sshd on loopback and
// `ssh -N -R PORT:127.0.0.1:ECHO`; clients connect to PORT on the sshd side.
//
//   client → TCP → sshd (its session process) → SSH channel → ssh → TCP → echo
//
// With `userLeg`, also what a user elsewhere runs to reach PORT, which sshd opens on its
// loopback only: an authenticated, encrypted SSH connection of their own,
// `ssh -N -L LOCAL:127.0.0.1:PORT`, the counterpart of Warren's user leg (TLS with a user
// certificate to the proxy):
//
//   client → TCP → ssh -L → SSH channel → sshd (the user's session) → TCP → sshd (the -R session) → SSH channel → ssh -R → TCP → echo
//
// Needs root (sshd) and Debian's openssh-server and openssh-client.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, tempDir } from '../../test/helpers/cluster.ts'

const SSHD = '/usr/sbin/sshd'

export interface OpensshTunnel {
  /** Where clients connect: the remote end of `-R`, opened by sshd. */
  port: number
  /** The negotiated cipher, from the client's verbose log. */
  cipher: string
  sshdPid: number
  sshPid: number
  /** With `userLeg`: the local end of the user's `ssh -L`, and that process. */
  userLeg?: { port: number; pid: number }
  stop(): Promise<void>
}

export function opensshMissing(): string | undefined {
  if (!existsSync(SSHD)) return 'sshd is not installed (apt-get install openssh-server)'
  if (process.getuid?.() !== 0) return 'sshd must run as root'
  return undefined
}

export async function startOpensshTunnel(echoPort: number, options: { userLeg?: boolean } = {}): Promise<OpensshTunnel> {
  const dir = tempDir('warren-bench-sshd-')
  mkdirSync('/run/sshd', { recursive: true }) // sshd's privilege separation directory
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'user_key')])
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_key.pub')))
  const sshdPort = await freePort()
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${sshdPort}`,
      'ListenAddress 127.0.0.1',
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PidFile none',
      'UsePAM no',
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      `AllowTcpForwarding ${options.userLeg ? 'yes' : 'remote'}`,
      'GatewayPorts no',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  )
  const processes: ChildProcess[] = []
  const stop = async () => {
    for (const child of processes.reverse()) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        await new Promise((resolve) => child.once('exit', resolve))
      }
    }
  }
  try {
    const sshd = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config'), '-h', join(dir, 'host_key')], { stdio: ['ignore', 'ignore', 'pipe'] })
    processes.push(sshd)
    let sshdLog = ''
    sshd.stderr!.on('data', (data) => (sshdLog += data))
    await waitForPort(sshdPort, () => `sshd did not start: ${sshdLog}`)

    const port = await freePort()
    const sshClient = (forward: string[]) => {
      const child = spawn(
        'ssh',
        [
          '-F',
          '/dev/null',
          '-v',
          '-N',
          '-o',
          'BatchMode=yes',
          '-o',
          'StrictHostKeyChecking=no',
          '-o',
          'UserKnownHostsFile=/dev/null',
          '-o',
          'ExitOnForwardFailure=yes',
          '-o',
          'IdentitiesOnly=yes',
          '-i',
          join(dir, 'user_key'),
          '-p',
          String(sshdPort),
          ...forward,
          'root@127.0.0.1',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      )
      processes.push(child)
      const log = { text: '' }
      child.stderr!.on('data', (data) => (log.text += data))
      return { child, log }
    }
    const ssh = sshClient(['-R', `127.0.0.1:${port}:127.0.0.1:${echoPort}`])
    await waitForPort(port, () => `ssh -R did not open the forwarded port: ${ssh.log.text}${sshdLog}`)
    const cipher = /kex: server->client cipher: (\S+ MAC: \S+ compression: \S+)/.exec(ssh.log.text)?.[1] ?? 'unknown cipher'
    let userLeg: OpensshTunnel['userLeg']
    if (options.userLeg) {
      const localPort = await freePort()
      const user = sshClient(['-L', `127.0.0.1:${localPort}:127.0.0.1:${port}`])
      await waitForPort(localPort, () => `ssh -L did not open its local port: ${user.log.text}${sshdLog}`)
      userLeg = { port: localPort, pid: user.child.pid! }
    }
    return { port, cipher, sshdPid: sshd.pid!, sshPid: ssh.child.pid!, userLeg, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

async function waitForPort(port: number, why: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () => {
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
