// `warrenctl auth sign`: fresh keys for a user (made here, never sent), certificates from
// the user CA, and everything a client needs to reach nodes with strict host key checking.

import { generateKeyPairSync } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { homedir } from 'node:os'
import { isAbsolute, join, relative, resolve } from 'node:path'
import { isSea } from 'node:sea'
import { formatUtc } from '../../shared/duration.ts'
import { UsageError } from '../../shared/errors.ts'
import { writeFileAtomic } from '../../shared/files.ts'
import { sshPublicKeyLine } from '../../shared/ssh-cert.ts'
import { openSshPrivateKey } from '../../shared/ssh-key-file.ts'
import { defaultProfileDir, PROFILE_FILES, type Profile, shellQuote } from '../profile.ts'
import type { AdminConnection } from './admin-client.ts'

interface SignFlags {
  user?: string
  ttl: number
  out?: string
  format: 'warren' | 'openssh'
  proxy?: string
}

export async function signUser(admin: AdminConnection, flags: SignFlags): Promise<void> {
  const user = flags.user
  if (!user) throw new UsageError('missing --user: the user to sign certificates for')
  const ssh = generateKeyPairSync('ed25519')
  const tls = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const signed = await admin.client.call('POST /v1/users/:name/certs', {
    params: { name: user },
    body: {
      ssh_public_key: sshPublicKeyLine(ssh.publicKey),
      tls_public_key: tls.publicKey.export({ type: 'spki', format: 'pem' }) as string,
      ttl_ms: flags.ttl,
    },
  })
  const dir = resolve(flags.out ?? defaultProfileDir())
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const write = (file: keyof typeof PROFILE_FILES, data: string, mode = 0o600) => writeFileAtomic(join(dir, PROFILE_FILES[file]), data, mode)
  write('sshKey', openSshPrivateKey(ssh.privateKey, user))
  write('sshPublicKey', sshPublicKeyLine(ssh.publicKey, user) + '\n', 0o644)
  write('sshCert', signed.ssh_cert.trimEnd() + '\n', 0o644)
  write('tlsKey', tls.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
  write('tlsCert', signed.tls_cert)
  write('hostCA', signed.host_ca_certs.join(''), 0o644)
  write('knownHosts', signed.known_hosts.map((line) => line + '\n').join(''), 0o644)
  const proxies = flags.proxy ? [flags.proxy] : signed.proxies
  const profile: Profile = { cluster_name: signed.cluster_name, user, logins: signed.logins, proxies, valid_before: signed.valid_before }
  write('profile', JSON.stringify(profile, null, 2) + '\n')
  if (flags.format === 'openssh') write('sshConfig', sshConfig(dir, signed.cluster_name, flags.proxy), 0o644)
  // Printed once every file is written: a reader that stops early (| head -1) loses nothing.
  const out = (text: string) => process.stdout.write(text + '\n')
  out(`Certificates for ${user} (logins ${signed.logins.join(',')}) valid until ${formatUtc(signed.valid_before)} written to ${dir}`)
  out(
    flags.format === 'openssh'
      ? `Connect with: ssh -F ${join(dir, PROFILE_FILES.sshConfig)} ${signed.logins[0]}@NODE`
      : `Connect with: warren ssh --identity=${dir} ${signed.logins[0]}@NODE`,
  )
}

/**
 * An ssh_config for a stock OpenSSH client. A directory under the home directory is named
 * from it (`${HOME}/.warren/...`, which OpenSSH expands), and the ProxyCommand runs
 * `warren` from PATH (or this single executable), so the directory still works when it is
 * copied to the same place in another home, on a laptop that has warren installed.
 */
function sshConfig(dir: string, cluster: string, proxy: string | undefined): string {
  const rel = relative(homedir(), dir)
  const underHome = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)
  const file = (name: keyof typeof PROFILE_FILES) => configWord(underHome ? `\${HOME}/${rel}/${PROFILE_FILES[name]}` : join(dir, PROFILE_FILES[name]))
  const identity = underHome ? `~/${rel}` : dir
  const warren = isSea() ? shellQuote(process.execPath) : 'warren'
  const proxyFlag = proxy ? ` ${shellQuote(`--proxy=${proxy}`)}` : ''
  return [
    `# Reach the nodes of cluster ${cluster} with a stock OpenSSH client: ssh -F ${join(identity, PROFILE_FILES.sshConfig)} login@node`,
    'Host *',
    `    UserKnownHostsFile ${file('knownHosts')}`,
    '    StrictHostKeyChecking yes',
    '    IdentitiesOnly yes',
    `    IdentityFile ${file('sshKey')}`,
    `    CertificateFile ${file('sshCert')}`,
    `    ProxyCommand ${warren} proxy ssh ${shellQuote(`--identity=${identity}`)}${proxyFlag} %r@%h:%p`,
    '',
  ].join('\n')
}

/** A path as one ssh_config argument: in double quotes when it has spaces. */
function configWord(path: string): string {
  return /\s/.test(path) ? `"${path}"` : path
}
