// `warren login` and `warren logout`: a person's own short-lived certificates, through any
// proxy. The first login to a cluster trusts its CA by pin (given, or shown and confirmed
// at the terminal, like SSH's first connection); an invitation (--invite) sets a password
// and enrols a TOTP second factor first. The credentials go to ~/.warren/<cluster>/ with an
// ssh_config for a stock OpenSSH client.

import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import QRCode from 'qrcode'
import { ApiClient } from '../shared/api-client.ts'
import { clusterNameProblem } from '../shared/cluster-name.ts'
import { formatExpiry, formatUtc } from '../shared/duration.ts'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { caPin, parsePin, pinMatches, singleCertificate } from '../shared/pin.ts'
import { printable } from '../shared/printable.ts'
import type { UserCerts } from '../shared/protocol/admin.ts'
import { fetchTrustBridges, hostCAsAcrossBridges } from '../shared/trust-bridge.ts'
import { checkedUserCerts } from './checked-user-certs.ts'
import { defineCommand } from './command.ts'
import { hideFlagValue } from './command-line-secrets.ts'
import { generateUserKeys, type UserKeys, writeUserCredentials } from './credentials-files.ts'
import { HOST_KEYS_DIR } from './host-keys.ts'
import { checkCredentialsDir, defaultProfileDir, PROFILE_FILES, type Profile } from './profile.ts'
import { Prompter } from './prompt.ts'
import { completeSignup, logIn, startSignup, type TrustedCluster } from './sealed-login-requests.ts'

/** The longest a login asks for; the auth server gives less when the user's roles say so. */
const DEFAULT_LOGIN_TTL_MS = 12 * 3_600_000
const MIN_PASSWORD_LENGTH = 12

const out = (text: string) => process.stdout.write(text + '\n')
const tell = (text: string) => process.stderr.write(text + '\n')

/** Where a cluster's login credentials are. Its name names a directory: nothing that could climb out of ~/.warren. */
export function clusterDir(cluster: string): string {
  if (clusterNameProblem(cluster)) throw new WarrenError(`the cluster's name ${JSON.stringify(cluster)} cannot name a directory`)
  return join(defaultProfileDir(), cluster)
}

/**
 * The cluster's name and the host CA certificates to trust, by pin, by an earlier login, or
 * by the person's yes; with an earlier login's CAs, the version of the set they came in, which
 * the answer's set must not be older than.
 */
async function trustCluster(server: string, pins: string[], prompter: Prompter): Promise<{ cluster: string; caPems: string[]; trustVersion?: number }> {
  const anonymous = new ApiClient({ server })
  const ca = await anonymous.call('GET /v1/ca').finally(() => anonymous.close())
  if (!Array.isArray(ca.host_ca_certs) || ca.host_ca_certs.length === 0) throw new WarrenError(`${server} did not return a cluster CA`)
  // One certificate per entry, re-encoded: what TLS then trusts is exactly what was pinned or confirmed.
  const certs = ca.host_ca_certs.map((pem, i) => singleCertificate(pem, `CA entry ${i + 1} from ${server}`))
  const presented = certs.map(caPin)
  const trusted = (accepted: string[]) => certs.filter((pem) => accepted.some((pin) => pinMatches([pem], pin)))
  if (pins.length > 0) {
    const pinned = trusted(pins)
    if (pinned.length === 0)
      throw new WarrenError(
        `CA pin mismatch: ${server} presented a CA with pin ${presented.join(', ')}, but --ca-pin expects ${pins.join(', ')}. Refusing to log in: the address may be hijacked, or the pin is wrong.`,
      )
    return { cluster: ca.cluster_name, caPems: pinned }
  }
  const before = join(clusterDir(ca.cluster_name), PROFILE_FILES.hostCA)
  if (existsSync(before)) {
    // The CAs of an earlier login are trusted again: only from a directory no one else can change.
    checkCredentialsDir(clusterDir(ca.cluster_name))
    const earlierPems = readFileSync(before, 'utf8').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []
    const stored = earlierProfile(ca.cluster_name)?.trust_version
    const trustVersion = Number.isSafeInteger(stored) ? stored : undefined
    const known = trusted(earlierPems.map(caPin))
    if (known.length > 0) return { cluster: ca.cluster_name, caPems: known, trustVersion }
    // A host CA rotation since: the bridges the cluster keeps, signed by the CA trusted before, lead to the new one.
    const bridged = trusted((await hostCAsAcrossRotation(server, ca.cluster_name, earlierPems, trustVersion)).map(caPin))
    if (bridged.length > 0) {
      tell(
        `The cluster "${ca.cluster_name}" rotated its host CA since the last login: trusting ${bridged.map(caPin).join(', ')}, signed over by the CA trusted before (${earlierPems.map(caPin).join(', ')}).`,
      )
      return { cluster: ca.cluster_name, caPems: bridged, trustVersion }
    }
    // As OpenSSH does when a host's key changed: no question whose yes would replace what was trusted.
    throw new WarrenError(
      `cluster "${ca.cluster_name}" at ${server} presents a CA with pin ${presented.join(', ')}, which is not the CA trusted at the last login to it (${before}). The address may be hijacked, or the cluster's CA was rotated since and no bridge out of the CA trusted before could be had: check the pin with the cluster's admin ("warrenctl status") and pass it with --ca-pin`,
    )
  }
  if (certs.length > 1) {
    // A proxy's keys can list a CA of their own beside the real one: a yes to two pins would trust both.
    throw new WarrenError(
      `first login to cluster "${ca.cluster_name}" at ${server}: it presents ${certs.length} CAs (pins ${presented.join(', ')}), as during a CA rotation. Check which is the cluster's with its admin ("warrenctl status") and pass it with --ca-pin`,
    )
  }
  if (!prompter.isTerminal) {
    throw new WarrenError(
      `first login to cluster "${ca.cluster_name}" at ${server}: its CA has pin ${presented.join(', ')}. There is no terminal to confirm it: check the pin with the cluster's admin ("warrenctl status") and pass --ca-pin`,
    )
  }
  const answer = await prompter.ask(
    `The cluster "${ca.cluster_name}" at ${server} presents a CA with pin ${presented.join(', ')}.\nCheck it with the cluster's admin ("warrenctl status" shows it). Trust it (yes/no)? `,
  )
  if (answer.trim().toLowerCase() !== 'yes') throw new WarrenError('the cluster was not trusted: nothing was sent to it')
  return { cluster: ca.cluster_name, caPems: certs }
}

/**
 * The host CAs the cluster trusts now, reached from `earlierPems` through the bridges its
 * rotations left (shared/trust-bridge.ts); none when no bridge is kept or none leads there.
 * The answer is believed by its signatures only: it comes over TLS not yet verified.
 */
async function hostCAsAcrossRotation(server: string, cluster: string, earlierPems: string[], trustVersion: number | undefined): Promise<string[]> {
  for (const pem of earlierPems) {
    // A proxy that keeps no bridges (or answers nothing readable) leaves the person the pin to check.
    const answer = await fetchTrustBridges(server, caPin(pem)).catch(() => undefined)
    const reached = answer && hostCAsAcrossBridges(answer, cluster, earlierPems, trustVersion)
    if (reached) return reached
  }
  return []
}

/** Accepting an invitation: whose it is, the second factor to enrol, a password twice and a first code; the answer is a login's. */
async function signUp(client: ApiClient, cluster: TrustedCluster, token: string, keys: UserKeys, ttlMs: number, prompter: Prompter): Promise<{ user: string; signed: UserCerts }> {
  const started = await startSignup(client, cluster, token)
  // The answer comes through the proxy: printed escaped.
  tell(`Signing up as ${printable(started.user)} to cluster ${printable(started.cluster_name)}.`)
  tell('')
  tell('Scan this with an authenticator app (or enter the secret below by hand):')
  tell(await QRCode.toString(started.otpauth_uri, { type: 'terminal', small: true }))
  tell(printable(started.otpauth_uri))
  tell('')
  const password = await prompter.secret(`Password for ${printable(started.user)} (at least ${MIN_PASSWORD_LENGTH} characters): `)
  if ([...password].length < MIN_PASSWORD_LENGTH) throw new WarrenError(`a password needs at least ${MIN_PASSWORD_LENGTH} characters: run the same command again`)
  if ((await prompter.secret('The same password again: ')) !== password) throw new WarrenError('the passwords differ: run the same command again')
  const code = await prompter.ask('Code from the authenticator app: ')
  const signed = await completeSignup(client, cluster, { token, password, totp_code: code.trim() }, keys, ttlMs)
  return { user: started.user, signed }
}

/** Password and code for `name` (asked when no flag or earlier login says). */
async function logInAs(
  client: ApiClient,
  cluster: TrustedCluster,
  name: string | undefined,
  keys: UserKeys,
  ttlMs: number,
  prompter: Prompter,
): Promise<{ user: string; signed: UserCerts }> {
  const user = name ?? (await prompter.ask('User: ')).trim()
  const password = await prompter.secret(`Password for ${user}: `)
  const code = await prompter.ask('Second factor code: ')
  // The challenge is asked for once the answers are in: it lasts two minutes.
  const signed = await logIn(client, cluster, user, { password, totp_code: code.trim() }, keys, ttlMs)
  return { user, signed }
}

export const loginCommand = defineCommand({
  name: 'warren login',
  summary: 'log in through a proxy with password and second factor, for short-lived certificates to reach nodes',
  flags: {
    proxy: { type: 'string', placeholder: 'HOST:PORT', description: "a proxy's web port (required)" },
    user: { type: 'string', placeholder: 'NAME', defaultText: "the last login's, else asked", description: 'the user to log in as' },
    invite: { type: 'string', placeholder: 'TOKEN', description: 'accept an invitation first: set a password and enrol a second factor' },
    'ca-pin': { type: 'list', noun: 'pin', description: "the cluster CA's pin (sha256:...), from its admin; without it a first login asks at the terminal" },
    ttl: { type: 'duration', default: DEFAULT_LOGIN_TTL_MS, description: "the certificates' lifetime (the cluster may give less)" },
    fdpass: { type: 'boolean', description: 'the ssh_config has ssh talk to the proxy itself (ProxyUseFdpass): a plain SSH stream, no process copying it' },
  },
  description: `Credentials go to ~/.warren/<cluster>/ ($WARREN_HOME/<cluster>/), with an ssh_config for a
    stock OpenSSH client (with --fdpass, one whose ProxyCommand hands ssh the connection to the proxy; SECURITY.md,
    "Plain SSH streams"). Answers are read from the terminal; when standard input is not a terminal,
    each answer is its next line (the CA is then trusted only by --ca-pin).`,
  examples: ['warren login --proxy=proxy.example.com:3080 --invite=TOKEN', 'warren login --proxy=proxy.example.com:3080 --user=alice'],
  async run(flags) {
    // The sign-up waits at the terminal: the invitation must not sit in `ps` meanwhile.
    hideFlagValue('invite')
    if (!flags.proxy) throw new UsageError('missing --proxy: the proxy to log in through, e.g. --proxy=proxy.example.com:3080')
    const pins = (flags['ca-pin'] ?? []).map(parsePin)
    const prompter = new Prompter()
    const { cluster, caPems, trustVersion } = await trustCluster(flags.proxy, pins, prompter)
    const client = new ApiClient({ server: flags.proxy, caPems })
    const keys = generateUserKeys()
    const trusted = { name: cluster, caPems }
    const answer = flags.invite
      ? signUp(client, trusted, flags.invite, keys, flags.ttl, prompter)
      : logInAs(client, trusted, flags.user ?? lastUser(cluster), keys, flags.ttl, prompter)
    const { user, signed: answered } = await answer.finally(() => client.close())
    const signed = checkedUserCerts(answered, cluster, caPems, keys, { trustVersion })
    const dir = clusterDir(signed.cluster_name)
    const extra = { roles: signed.roles, trust_version: signed.trust?.version }
    writeUserCredentials(dir, keys, signed, { user, proxy: flags.proxy, sshConfig: true, fdpass: flags.fdpass, extra })
    out(loggedInText(user, signed, dir))
    return 0
  },
})

/** What a login says once done; the names in the answer came through the proxy, and are printed escaped. */
export function loggedInText(user: string, signed: UserCerts, dir: string): string {
  const list = (names: string[]) => names.map(printable).join(',')
  return [
    `Logged in as ${printable(user)} to cluster ${printable(signed.cluster_name)} (roles ${list(signed.roles)}, logins ${list(signed.logins)}) until ${formatUtc(signed.valid_before)}`,
    `Connect with: ssh -F ${join(dir, PROFILE_FILES.sshConfig)} ${printable(signed.logins[0] ?? 'LOGIN')}@NODE`,
  ].join('\n')
}

function lastUser(cluster: string): string | undefined {
  return earlierProfile(cluster)?.user
}

/** The profile of the last login to `cluster`, from a directory no one else can change. */
function earlierProfile(cluster: string): Profile | undefined {
  try {
    checkCredentialsDir(clusterDir(cluster))
    return JSON.parse(readFileSync(join(clusterDir(cluster), PROFILE_FILES.profile), 'utf8')) as Profile
  } catch {
    return undefined
  }
}

/** The clusters logged in to: their directory and profile. */
export function logins(): { dir: string; profile: Profile }[] {
  const home = defaultProfileDir()
  const found: { dir: string; profile: Profile }[] = []
  for (const entry of existsSync(home) ? readdirSync(home, { withFileTypes: true }) : []) {
    if (!entry.isDirectory()) continue
    try {
      // A directory another user could change is no login of ours: never listed, used or emptied.
      checkCredentialsDir(join(home, entry.name))
      const profile = JSON.parse(readFileSync(join(home, entry.name, PROFILE_FILES.profile), 'utf8')) as Profile
      if (profile.roles) found.push({ dir: join(home, entry.name), profile })
    } catch {}
  }
  return found
}

/** `warren status` without a node on this machine: who is logged in where, until when. */
export function loginStatusText(now = Date.now()): string {
  const found = logins()
  if (found.length === 0) return 'Not logged in: "warren login --proxy=HOST:PORT" logs in\n'
  return found
    .map(({ dir, profile }) =>
      [
        `> Cluster:  ${profile.cluster_name}`,
        `  User:     ${printable(profile.user)}`,
        `  Roles:    ${printable(profile.roles?.join(', ') ?? '')}`,
        `  Logins:   ${printable(profile.logins.join(', '))}`,
        `  Proxy:    ${profile.proxies[0] ?? '-'}`,
        `  Valid:    until ${formatExpiry(profile.valid_before, now)}${profile.valid_before <= now ? ' EXPIRED' : ''}`,
        `  Files:    ${dir}`,
        '',
      ].join('\n'),
    )
    .join('\n')
}

export const logoutCommand = defineCommand({
  name: 'warren logout',
  summary: "remove the credentials of a login (every cluster's, unless --cluster names one)",
  flags: { cluster: { type: 'string', placeholder: 'NAME', description: 'only this cluster' } },
  examples: ['warren logout', 'warren logout --cluster=home'],
  async run(flags) {
    const found = logins().filter(({ profile }) => flags.cluster === undefined || profile.cluster_name === flags.cluster)
    if (found.length === 0) throw new WarrenError(flags.cluster ? `not logged in to cluster ${flags.cluster}` : 'not logged in')
    for (const { dir, profile } of found) {
      // Only the files a login writes: whatever else someone put there stays.
      for (const file of Object.values(PROFILE_FILES)) rmSync(join(dir, file), { force: true })
      rmSync(join(dir, HOST_KEYS_DIR), { recursive: true, force: true })
      if (readdirSync(dir).length === 0) rmSync(dir, { recursive: true })
      out(`Logged out of cluster ${profile.cluster_name} (user ${profile.user})`)
    }
    return 0
  },
})
