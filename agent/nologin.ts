// While /run/nologin or /etc/nologin exists, only root logs in: systemd writes the first
// from five minutes before a scheduled shutdown until the next boot has finished starting
// (systemd-user-sessions), and an operator writes either to keep users off a device being
// serviced. sshd refuses other logins then (pam_nologin, or sshd itself without PAM), and so
// does the node.

import { existsSync } from 'node:fs'

/** Where pam_nologin looks, in its order. */
export const NOLOGIN_FILES = ['/run/nologin', '/etc/nologin']

/** The nologin file that stops `uid` from logging in now, if one does (root is never stopped). */
export function nologinFile(uid: number, files: readonly string[] = NOLOGIN_FILES): string | undefined {
  if (uid === 0) return undefined
  return files.find((file) => existsSync(file))
}
