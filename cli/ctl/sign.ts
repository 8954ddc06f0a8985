// `warrenctl auth sign`: fresh keys for a user (made here, never sent), certificates from
// the user CA, and everything a client needs to reach nodes with strict host key checking.

import { join, resolve } from 'node:path'
import { formatUtc } from '../../shared/duration.ts'
import { UsageError } from '../../shared/errors.ts'
import { printable } from '../../shared/printable.ts'
import { checkedUserCerts } from '../checked-user-certs.ts'
import { generateUserKeys, publicKeyFields, writeUserCredentials } from '../credentials-files.ts'
import { defaultProfileDir, PROFILE_FILES } from '../profile.ts'
import type { AdminConnection } from './admin-client.ts'

interface SignFlags {
  user?: string
  ttl: number
  out?: string
  format: 'warren' | 'openssh'
  proxy?: string
  fdpass?: boolean
}

/** The flags' mistakes, before anything connects; returns the user to sign for. */
export function checkSignFlags(flags: SignFlags): string {
  const user = flags.user
  if (!user) throw new UsageError('missing --user: the user to sign certificates for')
  if (flags.fdpass && flags.format !== 'openssh') throw new UsageError('--fdpass is a setting of the ssh_config: give it with --format=openssh')
  return user
}

export async function signUser(admin: AdminConnection, flags: SignFlags): Promise<void> {
  const user = checkSignFlags(flags)
  const keys = generateUserKeys()
  const answered = await admin.client.call('POST /v1/users/:name/certs', { params: { name: user }, body: { ...publicKeyFields(keys), ttl_ms: flags.ttl } })
  const signed = checkedUserCerts(answered, admin.cluster, admin.hostCAs, keys, { fromAuthServer: admin.identity !== undefined })
  const dir = resolve(flags.out ?? defaultProfileDir())
  writeUserCredentials(dir, keys, signed, { user, proxy: flags.proxy, sshConfig: flags.format === 'openssh', fdpass: flags.fdpass })
  // Printed once every file is written: a reader that stops early (| head -1) loses nothing.
  const out = (text: string) => process.stdout.write(text + '\n')
  // The logins come in the answer (through a proxy for an editor): printed escaped.
  const logins = signed.logins.map(printable)
  if (logins.length === 0) {
    // Roles that open ports only: no shell to connect to.
    out(`Certificates for ${user} (no login: the roles allow forwarded ports only) valid until ${formatUtc(signed.valid_before)} written to ${dir}`)
    out(`Connect with: warren proxy port --identity=${dir} NODE PORT`)
    return
  }
  out(`Certificates for ${user} (logins ${logins.join(',')}) valid until ${formatUtc(signed.valid_before)} written to ${dir}`)
  out(flags.format === 'openssh' ? `Connect with: ssh -F ${join(dir, PROFILE_FILES.sshConfig)} ${logins[0]}@NODE` : `Connect with: warren ssh --identity=${dir} ${logins[0]}@NODE`)
}
