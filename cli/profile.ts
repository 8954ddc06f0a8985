// A user's credentials on disk, as `warrenctl auth sign` writes them and `warren ssh` /
// `warren proxy ssh` read them: keys, certificates, the cluster's host CA, known_hosts,
// and profile.json with the proxy to use.

import { createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ADMIN_PROOF_HEADER, signAdminRequest } from '../shared/admin-request-proof.ts'
import { ApiClient, type ClientOptions } from '../shared/api-client.ts'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { checkPrivateDir, type PrivateDirRules } from '../shared/private-dir.ts'
import { expandHome } from './flags.ts'

export interface Profile {
  cluster_name: string
  user: string
  logins: string[]
  proxies: string[]
  valid_before: number
  /** The user's roles, when its credentials come from a login. */
  roles?: string[]
  /**
   * The version of the signed set the host CAs in host_ca.pem came in (shared/trust-statement.ts),
   * when they came from a login: a later login takes no set older than it.
   */
  trust_version?: number
}

export const PROFILE_FILES = {
  sshKey: 'id_ed25519',
  sshPublicKey: 'id_ed25519.pub',
  sshCert: 'id_ed25519-cert.pub',
  tlsKey: 'tls.key',
  tlsCert: 'tls.crt',
  hostCA: 'host_ca.pem',
  knownHosts: 'known_hosts',
  sshConfig: 'ssh_config',
  profile: 'profile.json',
}

/**
 * Where credentials are when no flag says: $WARREN_HOME, else ~/.warren. Made absolute: the
 * ssh_config written there names its files, and ssh may run from anywhere.
 */
export function defaultProfileDir(): string {
  return process.env.WARREN_HOME ? resolve(expandHome(process.env.WARREN_HOME)) : join(homedir(), '.warren')
}

const CREDENTIALS_DIR: PrivateDirRules = {
  what: 'credentials dir',
  harm: 'replace its ssh_config (whose ProxyCommand runs as you), host keys or host CA',
}

/**
 * Refuses a credentials dir that users other than the running one (and root) could have
 * written into: its files would not be the user's own (shared/private-dir.ts).
 */
export function checkCredentialsDir(dir: string): void {
  checkPrivateDir(dir, CREDENTIALS_DIR)
}

/** Before credentials are written into `dir`: the same, but a dir of ours that others may write into is made 0700, with a warning. */
export function secureCredentialsDir(dir: string): void {
  checkPrivateDir(dir, {
    ...CREDENTIALS_DIR,
    madePrivate: (mode) => process.stderr.write(`WARNING: credentials dir ${dir} was writable by other users (mode ${mode}); its mode is now 0700\n`),
  })
}

export function loadProfile(dir: string): Profile {
  checkCredentialsDir(dir)
  try {
    return JSON.parse(readFileSync(join(dir, PROFILE_FILES.profile), 'utf8')) as Profile
  } catch {
    throw new WarrenError(`no credentials in ${dir}: get them with "warrenctl auth sign --user=NAME --out=${dir}" (or pass --identity=DIR)`)
  }
}

/** How to run this very `warren` again from a ProxyCommand, as command words: this executable, or Node with our entry script. */
export function warrenCommand(): string[] {
  // In the single executable the binary is warren itself; only a checkout needs the script.
  if (!process.argv[1]?.endsWith('.ts')) return [process.execPath]
  return [process.execPath, fileURLToPath(new URL('./warren.ts', import.meta.url))]
}

/** A credentials file's path, once `dir` passes checkCredentialsDir: every reader of one asks here first. */
export function profilePath(dir: string, file: keyof typeof PROFILE_FILES): string {
  checkCredentialsDir(dir)
  return resolve(dir, PROFILE_FILES[file])
}

/** A client of a proxy's HTTPS API as the user of `dir`: the proxy given, else the profile's first. */
export function proxyApiClient(dir: string, proxy: string | undefined, noProxy = 'no proxy known: pass --proxy=HOST:PORT'): ApiClient {
  return new ApiClient(proxyClientOptions(dir, proxy, noProxy))
}

/**
 * The same for admin routes: each request signed with the user's TLS key
 * (shared/admin-request-proof.ts), which the auth server requires of admin requests a proxy carries.
 */
export function adminProxyApiClient(dir: string, proxy: string | undefined, noProxy?: string): ApiClient {
  const options = proxyClientOptions(dir, proxy, noProxy)
  const key = createPrivateKey(options.keyPem!)
  const cluster = loadProfile(dir).cluster_name
  return new ApiClient({ ...options, headersFor: (method, path, body) => ({ [ADMIN_PROOF_HEADER]: signAdminRequest(key, cluster, method, path, body) }) })
}

function proxyClientOptions(dir: string, proxy: string | undefined, noProxy = 'no proxy known: pass --proxy=HOST:PORT'): ClientOptions {
  const server = proxy ?? loadProfile(dir).proxies[0]
  if (!server) throw new UsageError(noProxy)
  return {
    server,
    caPems: [readFileSync(profilePath(dir, 'hostCA'), 'utf8')],
    certPem: readFileSync(profilePath(dir, 'tlsCert'), 'utf8'),
    keyPem: readFileSync(profilePath(dir, 'tlsKey'), 'utf8'),
  }
}
