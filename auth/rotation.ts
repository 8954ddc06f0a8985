// CA rotation without downtime, in Teleport's phases:
//   init            a new key set is published and trusted; the old one still signs
//   update_clients  the new key set signs: nodes and proxies renew their certificates
//                   (with their current identity, no token) and keep their connections;
//                   new connections to a proxy get its new certificate, which every host
//                   trusts since init
//   update_servers  every host holds a certificate from the new CA; both are still trusted
//   standby         the old key set is dropped: only the new CA is trusted (and pinned)
// rollback returns to the old key set from any phase before standby. Automatic mode walks
// the phases over the grace period. Every change is a compare-and-swap on the stored CA,
// so two auth servers cannot step the same rotation twice.
//
// A node that was off through a whole host rotation trusts only the dropped CA, so it cannot
// verify any server of the cluster after standby. The step to standby therefore keeps, in the
// same compare-and-swap, a bridge (trust.ts): the set as it was just before, signed with the
// old and the new key set, which the node takes by the old CA's signature. It is kept as long
// as such a node may still recover: its certificate's lifetime plus the recovery window.

import { caPin } from '../shared/pin.ts'
import { Authority, type AuthorityType, authorityKey, changedAtOf, loadAuthority, newKeySet, type RotationPhase, type StoredAuthority } from './authorities.ts'
import type { Backend, Condition, Operation } from './backend/backend.ts'
import { bridgeKey, hostBridge } from './trust.ts'

export type RotateRequest =
  | { type: AuthorityType; mode: 'auto'; gracePeriodMs: number }
  | { type: AuthorityType; mode: 'manual'; phase: RotationPhase | 'rollback'; gracePeriodMs: number }

export class RotationError extends Error {}

const NEXT: Record<RotationPhase, RotationPhase> = { standby: 'init', init: 'update_clients', update_clients: 'update_servers', update_servers: 'standby' }

/** The stored CA after entering `phase` from its current state; throws when the step is not allowed. */
export function step(stored: StoredAuthority, phase: RotationPhase | 'rollback', mode: 'auto' | 'manual', gracePeriodMs: number, now: number): StoredAuthority {
  // Every step may change what nodes trust: they take a set only when it is newer than theirs.
  return { ...nextState(stored, phase, mode, gracePeriodMs, now), changedAt: Math.max(now, changedAtOf(stored) + 1) }
}

function nextState(stored: StoredAuthority, phase: RotationPhase | 'rollback', mode: 'auto' | 'manual', gracePeriodMs: number, now: number): StoredAuthority {
  const current = stored.rotation?.phase ?? 'standby'
  if (phase === 'rollback') {
    if (current === 'standby' || !stored.rotation) throw new RotationError(`no ${stored.type} CA rotation is in progress to roll back`)
    const previous = stored.keySets.find((set) => set.tlsCertPem === stored.rotation!.previousCertPem) ?? stored.keySets[stored.keySets.length - 1]
    return { ...stored, keySets: [previous], rotation: undefined }
  }
  if (NEXT[current] !== phase) {
    throw new RotationError(`the ${stored.type} CA is in phase ${current}: the next phase is ${NEXT[current]}, not ${phase}`)
  }
  const started = { phaseStarted: now, mode, gracePeriodMs }
  switch (phase) {
    case 'init':
      return {
        ...stored,
        keySets: [stored.keySets[0], newKeySet(stored.type, stored.clusterName)],
        rotation: { phase, ...started, previousCertPem: stored.keySets[0].tlsCertPem },
      }
    case 'update_clients':
      // The new key set (last) starts signing; the old one stays trusted.
      return { ...stored, keySets: [stored.keySets[1], stored.keySets[0]], rotation: { ...stored.rotation!, phase, ...started } }
    case 'update_servers':
      return { ...stored, rotation: { ...stored.rotation!, phase, ...started } }
    case 'standby':
      return { ...stored, keySets: [stored.keySets[0]], rotation: undefined, lastRotated: now }
  }
}

export interface RotationOptions {
  /** How long the bridge out of a dropped host CA is kept: `auth_service.host_cert_ttl` + `recovery_window`. */
  bridgeTtlMs: number
}

/** The options a server's settings give: a node holding a certificate of the dropped CA may recover for its lifetime plus the recovery window. */
export function rotationOptions(settings: { hostCertTtlMs: number; recoveryWindowMs: number }): RotationOptions {
  return { bridgeTtlMs: settings.hostCertTtlMs + settings.recoveryWindowMs }
}

/** Applies one requested step (or starts an automatic rotation) atomically. */
export async function rotate(backend: Backend, request: RotateRequest, options: RotationOptions, now = Date.now()): Promise<StoredAuthority> {
  const { stored, revision } = await loadAuthority(backend, request.type)
  const phase = request.mode === 'auto' ? 'init' : request.phase
  if (request.mode === 'auto' && stored.rotation) throw new RotationError(`a ${request.type} CA rotation is already in progress (phase ${stored.rotation.phase})`)
  const next = step(stored, phase, request.mode, request.gracePeriodMs, now)
  if (!(await commit(backend, stored, revision, next, options))) throw new RotationError(`the ${request.type} CA changed meanwhile; try again`)
  return next
}

/** For automatic rotations: moves to the next phase once a quarter of the grace period has passed in this one. */
export async function advanceAutomatic(backend: Backend, type: AuthorityType, options: RotationOptions, now = Date.now()): Promise<boolean> {
  const { stored, revision } = await loadAuthority(backend, type)
  const rotation = stored.rotation
  if (rotation?.mode !== 'auto' || now - rotation.phaseStarted < rotation.gracePeriodMs / 4) return false
  const next = step(stored, NEXT[rotation.phase], 'auto', rotation.gracePeriodMs, now)
  return commit(backend, stored, revision, next, options)
}

/** The host CA certificate that entering `next` drops at standby, if it does. */
function droppedHostCA(stored: StoredAuthority, next: StoredAuthority): string | undefined {
  if (stored.type !== 'host' || stored.rotation?.phase !== 'update_servers' || next.rotation !== undefined) return undefined
  return stored.keySets.find((set) => !next.keySets.some((kept) => kept.tlsCertPem === set.tlsCertPem))?.tlsCertPem
}

/** Stores `next` if the CA is still at `revision`, with the bridge out of the host CA it drops. */
async function commit(backend: Backend, stored: StoredAuthority, revision: number, next: StoredAuthority, options: RotationOptions): Promise<boolean> {
  const conditions: Condition[] = [{ key: authorityKey(stored.type), revision }]
  const operations: Operation[] = [{ op: 'put', key: authorityKey(stored.type), value: JSON.stringify(next) }]
  const dropped = droppedHostCA(stored, next)
  if (dropped !== undefined) {
    // Signed while the old key is still held; the user CA as nodes trusted it with this set,
    // its revision a condition so that the bridge names exactly those keys.
    const user = await loadAuthority(backend, 'user')
    const bridge = hostBridge(stored.clusterName, new Authority(stored), user.authority)
    conditions.push({ key: authorityKey('user'), revision: user.revision })
    operations.push({ op: 'put', key: bridgeKey(caPin(dropped)), value: JSON.stringify(bridge), ttlMs: options.bridgeTtlMs })
  }
  return backend.txn(conditions, operations)
}
