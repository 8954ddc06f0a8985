// A joining role's identity: the one stored in the data dir, or a fresh one obtained with
// the join token (then stored, so the token is never needed again). A stored certificate
// that expired while the host was offline is recovered with the stored keys (recover.ts).
// A join that gets no answer is tried again with the same keys (untilAnswered, below).

import { createPublicKey, type KeyObject, X509Certificate } from 'node:crypto'
import { hostname } from 'node:os'
import { parseHostPort } from './address.ts'
import { AssignedLabelsRefused, type AssignedLabelsStatement } from './assigned-labels.ts'
import { Backoff } from './backoff.ts'
import type { WarrenConfig } from './config.ts'
import { resolveTokenValue } from './config.ts'
import { ApiError, JoinRefusedError, UnreachableError, WarrenError } from './errors.ts'
import type { IdentityKeeper } from './identity-keeper.ts'
import { acceptAssignedLabels, assignedLabelsFields, loadIdentity, type NodeIdentity, saveIdentity } from './identity-store.ts'
import type { JoinKeys } from './join.ts'
import type { Logger } from './log.ts'
import { forgetPendingJoinKeys, loadPendingJoinKeys, savePendingJoinKeys } from './pending-join-keys.ts'
import { caPin } from './pin.ts'
import { timeLeftFields } from './renewal-schedule.ts'
import { certificateUsable } from './renewal-window.ts'
import { acceptRenewed } from './renewed-certificates.ts'

type Role = 'node' | 'proxy'

/**
 * `keeper`: where a recovered identity is saved (shared/identity-keeper.ts): a disk that
 * refuses it then leaves the host running on it from memory. Without one, a refused save is a
 * failed recovery.
 */
export async function obtainIdentity(config: WarrenConfig, role: Role, log: Logger, warn?: (message: string) => void, keeper?: IdentityKeeper): Promise<NodeIdentity> {
  const stored = loadIdentity(config.dataDir, role)
  if (stored) {
    // Keys of a join other than the stored identity's, which cannot be used: a re-admission
    // with a token whose answer was lost (its process stopped first). The auth server may have
    // registered them, replacing the stored host, and only a join with them is answered again.
    const pending = loadPendingJoinKeys(config.dataDir, role)
    const readmitting = pending !== undefined && !certificateUsable(stored) && !holdsKeys(stored, pending)
    if (readmitting && config.authToken) {
      log.warn(`this ${role} stopped during a join with a token: joining again with the keys of that join`, { host_id: stored.hostId })
      return joinWithToken(config, role, log, warn, { nodename: stored.nodename, server: stored.authServers[0], pins: stored.hostCAPems.map(caPin) }, keeper)
    }
    // Left by a join whose identity was stored before its process stopped: done with. Those of
    // a re-admission stay for a start with its token.
    if (!readmitting) forgetPendingJoinKeys(config.dataDir, role)
    log.info(`using the identity stored in ${config.dataDir}`, { host_id: stored.hostId, cluster: stored.clusterName, ...timeLeftFields(new X509Certificate(stored.tlsCertPem)) })
    warnIgnoredSettings(config, stored, log)
    return certificateUsable(stored) ? stored : recoverStored(config, role, stored, log, warn, keeper)
  }
  return joinWithToken(config, role, log, warn, undefined, keeper)
}

/**
 * Once joined, the stored identity decides the host's name, where it reaches the cluster and
 * which CAs it trusts: a config or flag that says otherwise is told, not silently ignored.
 * The nodename is judged only when it is not the host name, its default.
 */
function warnIgnoredSettings(config: WarrenConfig, stored: NodeIdentity, log: Logger): void {
  const ignored = (setting: string, configured: string, inUse: string) =>
    log.warn(
      `${setting} is ${configured}, but this host joined as its stored identity says (${inUse}), which decides: to change it, join again with a new token after removing ${config.dataDir}'s identity`,
      {
        ignored_setting: setting,
        configured,
        in_use: inUse,
      },
    )
  if (config.nodename !== stored.nodename && config.nodename !== hostname()) ignored('nodename', config.nodename, stored.nodename)
  const server = config.authServers[0]
  if (server !== undefined && !stored.authServers.includes(server)) ignored('auth_servers', server, stored.authServers.join(','))
  const trusted = stored.hostCAPems.map(caPin)
  if (config.caPins.length > 0 && !config.caPins.some((pin) => trusted.includes(pin))) ignored('ca_pin', config.caPins.join(','), trusted.join(','))
}

/** Whether `keys` are the stored identity's own (its TLS key, whose public half the certificate names). */
function holdsKeys(stored: NodeIdentity, keys: JoinKeys): boolean {
  const der = (key: KeyObject) => key.export({ type: 'spki', format: 'der' })
  return der(createPublicKey(stored.tlsKeyPem)).equals(der(keys.tls.publicKey))
}

/**
 * The stored certificate expired (or its CA was dropped) while the host was away: the
 * stored keys recover it. Past the recovery window only a token re-admits the host, so
 * one at hand (the command `warrenctl nodes add --nodename` prints) joins it again. When
 * neither works, the stored identity is returned as it is: the role's renewal schedule
 * keeps trying (a proxy cannot start without a valid certificate, and says so).
 */
async function recoverStored(
  config: WarrenConfig,
  role: Role,
  stored: NodeIdentity,
  log: Logger,
  warn?: (message: string) => void,
  keeper?: IdentityKeeper,
): Promise<NodeIdentity> {
  const { PastRecoveryWindow, recoverCertificates, StillValidByServer } = await import('./recover.ts')
  log.warn(`this ${role}'s certificate can no longer be used: recovering it with the keys it joined with`, { host_id: stored.hostId })
  try {
    const answer = await recoverCertificates(stored)
    const recovered = { ...stored }
    acceptRenewed(recovered, answer, (reason) => log.warn(`the CAs that came with the recovered certificates were refused: ${reason}`, { host_id: stored.hostId }))
    // Judged by the CAs trusted now, those that came with the answer included.
    takeAssignedLabels(recovered, answer.assigned_labels, log)
    if (keeper) keeper.save(recovered)
    else saveIdentity(config.dataDir, recovered, role)
    log.info(`recovered this ${role}'s certificates`, { host_id: recovered.hostId, ...timeLeftFields(new X509Certificate(recovered.tlsCertPem)) })
    return recovered
  } catch (error) {
    if (error instanceof StillValidByServer) {
      // Expired by this host's clock only: the renewal schedule renews it as usual (host-renewal.ts).
      const ahead = error.clockAheadMs === undefined ? {} : { clock_ahead_ms: error.clockAheadMs }
      log.warn(
        `this ${role}'s certificate is still valid by the auth server's clock, which this host's differs from (clock_ahead_ms): it renews it as usual instead (${error.message})`,
        {
          host_id: stored.hostId,
          ...ahead,
        },
      )
      return stored
    }
    if (!(error instanceof PastRecoveryWindow)) {
      log.warn(`recovering this ${role}'s certificates failed: ${(error as Error).message}`, { host_id: stored.hostId })
      return stored
    }
    if (!config.authToken) {
      log.error(error.message, { host_id: stored.hostId, readmit: error.readmit })
      return stored
    }
    log.warn(`${error.message}; joining again with the token given`, { host_id: stored.hostId })
    // As the host it was (the name the log told the admin to make the token for), where it
    // joined before and trusting the CAs it trusted then, unless the config names others.
    return joinWithToken(config, role, log, warn, { nodename: stored.nodename, server: stored.authServers[0], pins: stored.hostCAPems.map(caPin) }, keeper)
  }
}

async function joinWithToken(
  config: WarrenConfig,
  role: Role,
  log: Logger,
  warn?: (message: string) => void,
  before?: { nodename: string; server: string; pins: string[] },
  keeper?: IdentityKeeper,
): Promise<NodeIdentity> {
  const server = config.authServers[0] ?? before?.server
  if (!server) throw new WarrenError('no auth server to join: pass --auth-server=HOST:PORT (or auth_servers in the config file)')
  if (!config.authToken) throw new WarrenError(`this ${role} has not joined a cluster yet: pass --token=VALUE (or a file path starting with "/") to join`)
  // Joining and recovering are the only uses of the HTTPS client here: a usable stored identity does not load it.
  const { generateJoinKeys, joinCluster } = await import('./join.ts')
  const token = resolveTokenValue(config.authToken)
  // One set of keys for every try of this join, also across a restart: a try whose answer was
  // lost registered them, and only a try with the same keys is answered again (auth/join-repeat.ts).
  const keys = loadPendingJoinKeys(config.dataDir, role) ?? generateJoinKeys()
  try {
    savePendingJoinKeys(config.dataDir, role, keys)
  } catch (error) {
    log.warn(`the join's keys could not be saved in ${config.dataDir}: ${(error as Error).message}; if this ${role} restarts before its identity is saved, it needs a new token`, {
      data_dir: config.dataDir,
      join_keys_unsaved: (error as NodeJS.ErrnoException).code ?? (error as Error).message,
    })
  }
  const identity = await untilAnswered(log, () =>
    joinCluster({
      authServer: server,
      token,
      caPins: config.caPins.length > 0 ? config.caPins : (before?.pins ?? []),
      nodename: before?.nodename ?? config.nodename,
      roles: [role],
      // A proxy's certificates also name its public addresses (its token is an admin's grant).
      publicAddrs: role === 'proxy' ? config.proxy.publicAddrs.map((addr) => parseHostPort(addr, 443).host) : [],
      labels: config.labels,
      warn,
      keys,
      refusedAssignedLabels: (reason) => refusedAssignedLabels(reason, 'the join answer', log),
    }),
  ).catch((error: unknown) => {
    // Refused (or never sent): no registration waits on these keys. Unanswered: one may.
    if (!unanswered(error)) forgetPendingJoinKeys(config.dataDir, role)
    // A refusal (not a wait asked for): only an operator's new token or name changes it.
    if (error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 429) throw new JoinRefusedError(error.status, error.message)
    throw error
  })
  // A disk that refuses the identity leaves the host running on it from memory (the keeper
  // saves it later), and the keys saved above repeat the join after a restart meanwhile:
  // they go once the identity is on disk.
  if (keeper) {
    keeper.save(identity)
    keeper.whenSaved(() => forgetPendingJoinKeys(config.dataDir, role))
  } else {
    saveIdentity(config.dataDir, identity, role)
    forgetPendingJoinKeys(config.dataDir, role)
  }
  log.info(`joined cluster "${identity.clusterName}" as ${identity.nodename}`, {
    host_id: identity.hostId,
    role,
    ...timeLeftFields(new X509Certificate(identity.tlsCertPem)),
    ...assignedLabelsFields(identity),
  })
  return identity
}

/** Takes the assigned labels of a recovery's answer into `identity` (in place) when they check out; a refusal is logged, and changes nothing. */
function takeAssignedLabels(identity: NodeIdentity, statement: AssignedLabelsStatement | undefined, log: Logger): void {
  try {
    if (acceptAssignedLabels(identity, statement)) log.info('assigned labels updated', assignedLabelsFields(identity))
  } catch (error) {
    if (!(error instanceof AssignedLabelsRefused)) throw error
    refusedAssignedLabels(error.message, 'the recovery answer', log)
  }
}

function refusedAssignedLabels(reason: string, from: string, log: Logger): void {
  log.warn(`assigned labels from ${from} refused: ${reason}`, { assigned_labels_refused: reason, from })
}

/** How long a join keeps trying: while the auth server asks it to wait, or while it gets no answer. */
export const JOIN_WAIT_LIMIT_MS = 10 * 60_000
/** The backoff between tries that got no answer (shared/backoff.ts: full jitter, doubling up to the cap). */
export const JOIN_RETRY_BASE_MS = 1000
export const JOIN_RETRY_CAP_MS = 30_000

/**
 * Network failures after which a join may or may not have happened: the connection was
 * refused, reset, cut or went silent, or the network was briefly gone. A certificate that
 * fails verification, or a name that does not resolve, is none of these: tried again, it
 * fails again.
 */
const NO_ANSWER = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN'])

/**
 * Whether a join's failure leaves its outcome unknown, so that it is worth trying again: no
 * answer came, or the server (or a proxy on the way) failed with a 5xx. A 4xx is a refusal,
 * final.
 */
export function unanswered(error: unknown): boolean {
  if (error instanceof ApiError) return error.status >= 500
  return error instanceof UnreachableError && error.code !== undefined && NO_ANSWER.has(error.code)
}

export interface RetryOptions {
  limitMs?: number
  baseMs?: number
  capMs?: number
  random?: () => number
  /** The clock and the wait (injected by tests). */
  now?: () => number
  sleep?: (ms: number) => Promise<void>
}

const sleepFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Runs `attempt` (one join, always with the same keys) until it is answered, for up to
 * `limitMs`:
 * - after a 429 with a time to wait: joins in flight from one address share its tries
 *   (auth/rate-limit.ts), so a fleet booting behind one NAT address would otherwise see all
 *   but the first few fail. Each wait is the server's, plus up to as much again at random, so
 *   that the fleet does not come back at one moment.
 * - after no answer, or a 5xx (unanswered() above), with exponential backoff and full jitter
 *   (a restarted proxy is not stormed by its fleet). The join may have happened: the auth
 *   server answers its repeat with the same host (auth/join-repeat.ts).
 * Any other failure, a refusal, ends it at once with the server's message.
 */
export async function untilAnswered<T>(log: Logger, attempt: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const { limitMs = JOIN_WAIT_LIMIT_MS, baseMs = JOIN_RETRY_BASE_MS, capMs = JOIN_RETRY_CAP_MS, random = Math.random, now = Date.now, sleep = sleepFor } = options
  const deadline = now() + limitMs
  const backoff = new Backoff({ baseMs, capMs, random })
  for (;;) {
    try {
      return await attempt()
    } catch (error) {
      const waitS = error instanceof ApiError && error.status === 429 ? error.retryAfterS : undefined
      const waitMs = waitS !== undefined ? Math.ceil((waitS + random() * waitS) * 1000) : unanswered(error) ? backoff.next() : undefined
      if (waitMs === undefined || now() + waitMs > deadline) throw error
      if (waitS !== undefined) log.warn(`the auth server asks joins from this address to wait: trying again in ${Math.ceil(waitMs / 1000)}s`, { retry_in_ms: waitMs })
      else log.warn(`the join's outcome is unknown (${(error as Error).message}): trying it again with the same keys in ${Math.ceil(waitMs / 1000)}s`, { retry_in_ms: waitMs })
      await sleep(waitMs)
    }
  }
}
