// The logins an SSH session can run as: accounts from /etc/passwd.

import { readFileSync } from 'node:fs'

/** A login the server can run sessions as. */
export interface LoginAccount {
  name: string
  uid: number
  gid: number
  home: string
  shell: string
}

/** getpwnam(3) for /etc/passwd only (no NSS): name:password:uid:gid:gecos:home:shell. */
export function lookupPasswd(login: string): LoginAccount | undefined {
  let text: string
  try {
    text = readFileSync('/etc/passwd', 'utf8')
  } catch {
    return undefined
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':')
    if (fields.length !== 7 || fields[0] !== login) continue
    const uid = Number(fields[2])
    const gid = Number(fields[3])
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || fields[2] === '' || fields[3] === '') return undefined
    return { name: login, uid, gid, home: fields[5] || '/', shell: fields[6] || '/bin/sh' }
  }
  return undefined
}
