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

import { type ChildProcess, spawn } from 'node:child_process'
import { freePort } from '../../test/helpers/cluster.ts'
import { type Sshd, sshdMissing, startSshd, stopProcess, waitForPort } from './sshd.ts'

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

export const opensshMissing = sshdMissing

export async function startOpensshTunnel(echoPort: number, options: { userLeg?: boolean } = {}): Promise<OpensshTunnel> {
  const clients: ChildProcess[] = []
  let sshd: Sshd | undefined
  const stop = async () => {
    for (const child of clients.reverse()) await stopProcess(child)
    await sshd?.stop()
  }
  try {
    const server = await startSshd({ forwarding: options.userLeg ? 'yes' : 'remote' })
    sshd = server
    const { port: sshdPort, userKey } = server
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
          userKey,
          '-p',
          String(sshdPort),
          ...forward,
          'root@127.0.0.1',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      )
      clients.push(child)
      const log = { text: '' }
      child.stderr!.on('data', (data) => (log.text += data))
      return { child, log }
    }
    const ssh = sshClient(['-R', `127.0.0.1:${port}:127.0.0.1:${echoPort}`])
    await waitForPort(port, () => `ssh -R did not open the forwarded port: ${ssh.log.text}${server.log()}`)
    const cipher = /kex: server->client cipher: (\S+ MAC: \S+ compression: \S+)/.exec(ssh.log.text)?.[1] ?? 'unknown cipher'
    let userLeg: OpensshTunnel['userLeg']
    if (options.userLeg) {
      const localPort = await freePort()
      const user = sshClient(['-L', `127.0.0.1:${localPort}:127.0.0.1:${port}`])
      await waitForPort(localPort, () => `ssh -L did not open its local port: ${user.log.text}${server.log()}`)
      userLeg = { port: localPort, pid: user.child.pid! }
    }
    return { port, cipher, sshdPid: server.pid, sshPid: ssh.child.pid!, userLeg, stop }
  } catch (error) {
    await stop()
    throw error
  }
}
