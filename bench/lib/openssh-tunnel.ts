// The OpenSSH reverse tunnel that Warren is compared with: a throwaway sshd on loopback and
// `ssh -N -R PORT:127.0.0.1:ECHO`; clients connect to PORT on the sshd side.
//
//   client → TCP → sshd (its session process) → SSH channel → ssh → TCP → echo
//
// Needs root (sshd) and Debian's openssh-server and openssh-client.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
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
  stop(): Promise<void>
}

export function opensshMissing(): string | undefined {
  if (!existsSync(SSHD)) return 'sshd is not installed (apt-get install openssh-server)'
  if (process.getuid?.() !== 0) return 'sshd must run as root'
  return undefined
}

export async function startOpensshTunnel(echoPort: number): Promise<OpensshTunnel> {
  const dir = tempDir('warren-bench-sshd-')
  mkdirSync('/run/sshd', { recursive: true }) // sshd's privilege separation directory
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'user_key')])
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_key.pub')))
  const sshdPort = await freePort()
  writeFileSync(join(dir, 'sshd_config'), [
    `Port ${sshdPort}`,
    'ListenAddress 127.0.0.1',
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'PidFile none',
    'UsePAM no',
    'StrictModes no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'AllowTcpForwarding remote',
    'GatewayPorts no',
    'LogLevel ERROR',
    '',
  ].join('\n'))
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
    const ssh = spawn('ssh', [
      '-F', '/dev/null', '-v', '-N',
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=no',
      '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'ExitOnForwardFailure=yes',
      '-o', 'IdentitiesOnly=yes',
      '-i', join(dir, 'user_key'),
      '-p', String(sshdPort),
      '-R', `127.0.0.1:${port}:127.0.0.1:${echoPort}`,
      'root@127.0.0.1',
    ], { stdio: ['ignore', 'ignore', 'pipe'] })
    processes.push(ssh)
    let sshLog = ''
    ssh.stderr!.on('data', (data) => (sshLog += data))
    await waitForPort(port, () => `ssh -R did not open the forwarded port: ${sshLog}${sshdLog}`)
    const cipher = /kex: server->client cipher: (\S+ MAC: \S+ compression: \S+)/.exec(sshLog)?.[1] ?? 'unknown cipher'
    return { port, cipher, sshdPid: sshd.pid!, sshPid: ssh.pid!, stop }
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
