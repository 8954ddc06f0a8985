// Where OpenSSH's sftp-server lives on the device, for the `sftp` subsystem (scp, sftp and
// rsync's file listing all go through it). Looked up per request: a package may come or go.

import { accessSync, constants } from 'node:fs'

/** Debian/Ubuntu, OpenWrt, Alpine/Arch, then Fedora/RHEL. */
const SFTP_SERVER_PATHS = ['/usr/lib/openssh/sftp-server', '/usr/lib/sftp-server', '/usr/libexec/sftp-server', '/usr/libexec/openssh/sftp-server']

/** The first executable sftp-server, or undefined when the device has none. */
export function findSftpServer(paths: readonly string[] = SFTP_SERVER_PATHS): string | undefined {
  return paths.find((path) => {
    try {
      accessSync(path, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}
