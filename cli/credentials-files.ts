// A user's credentials written out, as `warrenctl auth sign` and `warren login` both write
// them: fresh keys (made here; only their public halves and signatures leave), the
// certificates, the cluster's host CA, known_hosts, profile.json and, for a stock OpenSSH
// client, an ssh_config.

import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { homedir } from 'node:os'
import { isAbsolute, join, relative } from 'node:path'
import { isSea } from 'node:sea'
import { writeFileAtomic } from '../shared/files.ts'
import { joinProofMessage, LOGIN_PURPOSE, signProof } from '../shared/join-proof.ts'
import type { UserCerts } from '../shared/protocol/admin.ts'
import type { LoginKeyFields } from '../shared/protocol/logins.ts'
import { sshPublicKeyLine } from '../shared/ssh-cert.ts'
import { openSshPrivateKey } from '../shared/ssh-key-file.ts'
import { HOST_KEYS_DIR } from './host-keys.ts'
import { PROFILE_FILES, type Profile, secureCredentialsDir } from './profile.ts'
import { proxyCommand, sshPath, sshWord } from './ssh-options.ts'

export interface UserKeys {
  ssh: { publicKey: KeyObject; privateKey: KeyObject }
  tls: { publicKey: KeyObject; privateKey: KeyObject }
}

export function generateUserKeys(): UserKeys {
  return { ssh: generateKeyPairSync('ed25519'), tls: generateKeyPairSync('ec', { namedCurve: 'P-256' }) }
}

/** The public halves, as a request for certificates carries them. */
export function publicKeyFields(keys: UserKeys): { ssh_public_key: string; tls_public_key: string } {
  return { ssh_public_key: sshPublicKeyLine(keys.ssh.publicKey), tls_public_key: keys.tls.publicKey.export({ type: 'spki', format: 'pem' }) as string }
}

/** The public halves with each key's signature over the cluster's challenge `nonce`, as a login or a sign-up proves them. */
export function provenKeyFields(keys: UserKeys, clusterName: string, nonce: string): LoginKeyFields {
  const message = joinProofMessage({ purpose: LOGIN_PURPOSE, clusterName, nonce, tlsPublicKey: keys.tls.publicKey, sshPublicKey: keys.ssh.publicKey })
  return { ...publicKeyFields(keys), nonce, tls_signature: signProof(message, keys.tls.privateKey), ssh_signature: signProof(message, keys.ssh.privateKey) }
}

export interface WriteOptions {
  user: string
  /** The proxy to go through, else the first the auth server listed. */
  proxy?: string
  /** Also an ssh_config for a stock OpenSSH client. */
  sshConfig: boolean
  /** The ssh_config hands ssh the connection to the proxy itself (ProxyUseFdpass: a plain SSH stream). */
  fdpass?: boolean
  /** What else the profile says (a login's roles). */
  extra?: Partial<Profile>
}

export function writeUserCredentials(dir: string, keys: UserKeys, signed: UserCerts, options: WriteOptions): Profile {
  // Before any file: a path that OpenSSH cannot be given is refused with nothing written.
  const config = options.sshConfig ? sshConfig(dir, signed.cluster_name, options.proxy, options.fdpass ?? false) : undefined
  // Checked once it exists: one made meanwhile by someone else is refused, not written into.
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  secureCredentialsDir(dir)
  const write = (file: keyof typeof PROFILE_FILES, data: string, mode = 0o600) => writeFileAtomic(join(dir, PROFILE_FILES[file]), data, mode)
  write('sshKey', openSshPrivateKey(keys.ssh.privateKey, options.user))
  write('sshPublicKey', sshPublicKeyLine(keys.ssh.publicKey, options.user) + '\n', 0o644)
  write('sshCert', signed.ssh_cert.trimEnd() + '\n', 0o644)
  write('tlsKey', keys.tls.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
  write('tlsCert', signed.tls_cert)
  write('hostCA', signed.host_ca_certs.join(''), 0o644)
  write('knownHosts', signed.known_hosts.map((line) => line + '\n').join(''), 0o644)
  const proxies = options.proxy ? [options.proxy] : signed.proxies
  const profile: Profile = { cluster_name: signed.cluster_name, user: options.user, logins: signed.logins, proxies, valid_before: signed.valid_before, ...options.extra }
  write('profile', JSON.stringify(profile, null, 2) + '\n')
  if (config !== undefined) write('sshConfig', config, 0o644)
  return profile
}

/**
 * An ssh_config for a stock OpenSSH client. A directory under the home directory is named
 * from it (`${HOME}/.warren/...`, which OpenSSH expands), and the ProxyCommand runs
 * `warren` from PATH (or this single executable), so the directory still works when it is
 * copied to the same place in another home, on a laptop that has warren installed. Host
 * keys are only the node's current key that the ProxyCommand writes to known_hosts.d/%h
 * before each connection (host-keys.ts; %h: OpenSSH 8.4 and later): OpenSSH takes a key that
 * any file it names holds, so the login's known_hosts would keep a removed node's key good.
 * With `fdpass` the ProxyCommand hands ssh its connection to the proxy and exits, so no
 * process copies the session (SECURITY.md, "Plain SSH streams").
 */
export function sshConfig(dir: string, cluster: string, proxy: string | undefined, fdpass: boolean): string {
  const rel = relative(homedir(), dir)
  const underHome = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)
  // Each path one word to OpenSSH's tokeniser, taken as it is but for the ${HOME} it expands (ssh-options.ts).
  const literal = (name: string) => (underHome ? `\${HOME}/${sshPath(join(rel, name))}` : sshPath(join(dir, name)))
  const identity = underHome ? `~/${rel}` : dir
  const warren = isSea() ? [process.execPath] : ['warren']
  const command = proxyCommand(warren, identity, proxy, fdpass)
  return [
    `# Reach the nodes of cluster ${cluster} with a stock OpenSSH client: ssh -F ${join(identity, PROFILE_FILES.sshConfig)} login@node`,
    'Host *',
    `    UserKnownHostsFile ${sshWord(`${literal(HOST_KEYS_DIR)}/%h`)}`,
    '    StrictHostKeyChecking yes',
    '    IdentitiesOnly yes',
    `    IdentityFile ${sshWord(literal(PROFILE_FILES.sshKey))}`,
    `    CertificateFile ${sshWord(literal(PROFILE_FILES.sshCert))}`,
    `    ProxyCommand ${command}`,
    ...(fdpass ? ['    ProxyUseFdpass yes'] : []),
    '',
  ].join('\n')
}
