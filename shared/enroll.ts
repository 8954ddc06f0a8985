// A joining role's identity: the one stored in the data dir, or a fresh one obtained with
// the join token (then stored, so the token is never needed again). A stored certificate
// that expired while the host was offline is recovered with the stored keys (recover.ts).

import { X509Certificate } from 'node:crypto'
import { parseHostPort } from './address.ts'
import type { WarrenConfig } from './config.ts'
import { resolveTokenValue } from './config.ts'
import { ApiError, WarrenError } from './errors.ts'
import { loadIdentity, type NodeIdentity, saveIdentity } from './identity-store.ts'
import type { Logger } from './log.ts'
import { caPin } from './pin.ts'
import { timeLeftFields } from './renewal-schedule.ts'
import { certificateUsable } from './renewal-window.ts'
import { acceptRenewed } from './renewed-certificates.ts'

type Role = 'node' | 'proxy'

export async function obtainIdentity(config: WarrenConfig, role: Role, log: Logger, warn?: (message: string) => void): Promise<NodeIdentity> {
  const stored = loadIdentity(config.dataDir, role)
  if (stored) {
    log.info(`using the identity stored in ${config.dataDir}`, { host_id: stored.hostId, cluster: stored.clusterName, ...timeLeftFields(new X509Certificate(stored.tlsCertPem)) })
    return certificateUsable(stored) ? stored : recoverStored(config, role, stored, log, warn)
  }
  return joinWithToken(config, role, log, warn)
}

/**
 * The stored certificate expired (or its CA was dropped) while the host was away: the
 * stored keys recover it. Past the recovery window only a token re-admits the host, so
 * one at hand (the command `warrenctl nodes add --nodename` prints) joins it again. When
 * neither works, the stored identity is returned as it is: the role's renewal schedule
 * keeps trying (a proxy cannot start without a valid certificate, and says so).
 */
async function recoverStored(config: WarrenConfig, role: Role, stored: NodeIdentity, log: Logger, warn?: (message: string) => void): Promise<NodeIdentity> {
  const { PastRecoveryWindow, recoverCertificates } = await import('./recover.ts')
  log.warn(`this ${role}'s certificate can no longer be used: recovering it with the keys it joined with`, { host_id: stored.hostId })
  try {
    const answer = await recoverCertificates(stored)
    const recovered = { ...stored }
    acceptRenewed(recovered, answer, (reason) => log.warn(`the CAs that came with the recovered certificates were refused: ${reason}`, { host_id: stored.hostId }))
    saveIdentity(config.dataDir, recovered, role)
    log.info(`recovered this ${role}'s certificates`, { host_id: recovered.hostId, ...timeLeftFields(new X509Certificate(recovered.tlsCertPem)) })
    return recovered
  } catch (error) {
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
    return joinWithToken(config, role, log, warn, { nodename: stored.nodename, server: stored.authServers[0], pins: stored.hostCAPems.map(caPin) })
  }
}

async function joinWithToken(
  config: WarrenConfig,
  role: Role,
  log: Logger,
  warn?: (message: string) => void,
  before?: { nodename: string; server: string; pins: string[] },
): Promise<NodeIdentity> {
  const server = config.authServers[0] ?? before?.server
  if (!server) throw new WarrenError('no auth server to join: pass --auth-server=HOST:PORT (or auth_servers in the config file)')
  if (!config.authToken) throw new WarrenError(`this ${role} has not joined a cluster yet: pass --token=VALUE (or a file path starting with "/") to join`)
  // Joining and recovering are the only uses of the HTTPS client here: a usable stored identity does not load it.
  const { joinCluster } = await import('./join.ts')
  const token = resolveTokenValue(config.authToken)
  const identity = await whileTooMany(log, () =>
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
    }),
  )
  saveIdentity(config.dataDir, identity, role)
  log.info(`joined cluster "${identity.clusterName}" as ${identity.nodename}`, { host_id: identity.hostId, role, ...timeLeftFields(new X509Certificate(identity.tlsCertPem)) })
  return identity
}

/** How long a join keeps trying while the auth server asks it to wait. */
export const JOIN_WAIT_LIMIT_MS = 10 * 60_000

/**
 * Runs `attempt` again while the auth server answers 429 with a time to wait: joins in
 * flight from one address share its tries (auth/rate-limit.ts), so a fleet booting behind
 * one NAT address would otherwise see all but the first few fail. Each wait is the server's,
 * plus up to as much again at random, so that the fleet does not come back at one moment.
 */
export async function whileTooMany<T>(log: Logger, attempt: () => Promise<T>, limitMs = JOIN_WAIT_LIMIT_MS, random = Math.random): Promise<T> {
  const deadline = Date.now() + limitMs
  for (;;) {
    try {
      return await attempt()
    } catch (error) {
      const waitS = error instanceof ApiError && error.status === 429 ? error.retryAfterS : undefined
      if (waitS === undefined) throw error
      const waitMs = Math.ceil((waitS + random() * waitS) * 1000)
      if (Date.now() + waitMs > deadline) throw error
      log.warn(`the auth server asks joins from this address to wait: trying again in ${Math.ceil(waitMs / 1000)}s`, { retry_in_ms: waitMs })
      await new Promise((resolve) => setTimeout(resolve, waitMs))
    }
  }
}
