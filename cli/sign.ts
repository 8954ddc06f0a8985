// `warrenctl auth sign`: fresh keys for a user (made here, never sent), certificates from
// the user CA, and everything a client needs to reach nodes with strict host key checking.

import { generateKeyPairSync } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { AdminConnection } from './admin-client.ts'
import { PROFILE_FILES, warrenCommand, type Profile } from './profile.ts'
import { formatUtc } from '../shared/duration.ts'
import { UsageError } from '../shared/errors.ts'
import { writeFileAtomic } from '../shared/files.ts'
import { sshPublicKeyLine } from '../shared/ssh-cert.ts'
import { openSshPrivateKey } from '../shared/ssh-key-file.ts'

export async function signUser(admin: AdminConnection, flags: Record<string, any>): Promise<void> {
  if (!flags.user) throw new UsageError('missing --user: the user to sign certificates for')
  if (!flags.out) throw new UsageError('missing --out: the directory to write the credentials to')
  if (flags.format !== 'warren' && flags.format !== 'openssh') throw new UsageError(`unknown --format "${flags.format}": use warren or openssh`)
  const ssh = generateKeyPairSync('ed25519')
  const tls = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const signed = await admin.client.call('POST /v1/users/:name/certs', {
    params: { name: flags.user },
    body: {
      ssh_public_key: sshPublicKeyLine(ssh.publicKey),
      tls_public_key: tls.publicKey.export({ type: 'spki', format: 'pem' }) as string,
      ttl_ms: flags.ttl,
    },
  })
  const dir = resolve(flags.out)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const write = (file: keyof typeof PROFILE_FILES, data: string, mode = 0o600) => writeFileAtomic(join(dir, PROFILE_FILES[file]), data, mode)
  write('sshKey', openSshPrivateKey(ssh.privateKey, flags.user))
  write('sshPublicKey', sshPublicKeyLine(ssh.publicKey, flags.user) + '\n', 0o644)
  write('sshCert', signed.ssh_cert.trimEnd() + '\n', 0o644)
  write('tlsKey', tls.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
  write('tlsCert', signed.tls_cert)
  write('hostCA', signed.host_ca_certs.join(''), 0o644)
  write('knownHosts', signed.known_hosts.map((line) => line + '\n').join(''), 0o644)
  const proxies = flags.proxy ? [flags.proxy] : signed.proxies
  const profile: Profile = { cluster_name: signed.cluster_name, user: flags.user, logins: signed.logins, proxies, valid_before: signed.valid_before }
  write('profile', JSON.stringify(profile, null, 2) + '\n')
  const out = (text: string) => process.stdout.write(text + '\n')
  out(`Certificates for ${flags.user} (logins ${signed.logins.join(',')}) valid until ${formatUtc(signed.valid_before)} written to ${dir}`)
  if (flags.format === 'openssh') {
    const proxyFlag = flags.proxy ? ` --proxy=${flags.proxy}` : ''
    write('sshConfig', [
      `# Reach the nodes of cluster ${signed.cluster_name} with a stock OpenSSH client: ssh -F ${join(dir, PROFILE_FILES.sshConfig)} login@node`,
      'Host *',
      `    UserKnownHostsFile ${join(dir, PROFILE_FILES.knownHosts)}`,
      '    StrictHostKeyChecking yes',
      '    IdentitiesOnly yes',
      `    IdentityFile ${join(dir, PROFILE_FILES.sshKey)}`,
      `    CertificateFile ${join(dir, PROFILE_FILES.sshCert)}`,
      `    ProxyCommand ${warrenCommand()} proxy ssh --identity=${dir}${proxyFlag} %r@%h:%p`,
      '',
    ].join('\n'), 0o644)
    out(`Connect with: ssh -F ${join(dir, PROFILE_FILES.sshConfig)} ${signed.logins[0]}@NODE`)
  } else {
    out(`Connect with: warren ssh --identity=${dir} ${signed.logins[0]}@NODE`)
  }
}
