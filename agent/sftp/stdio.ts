// `warren sftp-server`: Warren's SFTP server on standard input and output, for a device
// without OpenSSH's sftp-server. The node starts it as the login, through the login's shell,
// as it would start OpenSSH's; the node reads its file operations from the session's channel
// (channel-audit.ts). Not listed among warren's commands: only the node runs it.

import { serveSftp } from './server.ts'

export async function sftpServerCommand(): Promise<number> {
  // The client going away mid-answer is the end of the session, not an error to print.
  process.stdout.on('error', () => process.stdin.destroy())
  try {
    await serveSftp(process.stdin, process.stdout)
    return 0
  } catch (error) {
    process.stderr.write(`warren sftp-server: ${(error as Error).message}\n`)
    return 1
  }
}
