// Which SFTP server the `sftp` subsystem runs (scp, sftp and rsync's file listing all go
// through it): OpenSSH's sftp-server when the device has it, else Warren's own
// (`warren sftp-server`, see sftp/). `ssh_service.sftp_server` chooses otherwise. Looked up
// per request: a package may come or go.

import { accessSync, constants } from 'node:fs'

/** Debian/Ubuntu, OpenWrt, Alpine/Arch, then Fedora/RHEL. */
const SFTP_SERVER_PATHS = ['/usr/lib/openssh/sftp-server', '/usr/lib/sftp-server', '/usr/libexec/sftp-server', '/usr/libexec/openssh/sftp-server']

/** `ssh_service.sftp_server`: look for OpenSSH's, always Warren's own, or the sftp-server at a path. */
export type SftpServerSetting = 'auto' | 'builtin' | string

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

/** The OpenSSH sftp-server the setting names, or undefined for Warren's own. */
export function sftpServerProgram(setting: SftpServerSetting): string | undefined {
  if (setting === 'builtin') return undefined
  if (setting === 'auto') return findSftpServer()
  return setting
}
