// The auth server's section of the status document (shared/status.ts), built from its
// state when someone asks: the cluster, where it listens, its backend and the phase of each
// CA's rotation with the pins of the key sets it trusts; with etcd, whether the other auth
// servers of the backend share its recording_dir, and the keys they keep for assignments.

import { type AuthStatus, type CAStatus, statusTime } from '../shared/status.ts'
import type { Authority } from './authorities.ts'
import type { StorageTransport } from './backend/index.ts'
import type { AuthServer } from './server.ts'

/** For an auth server whose start() has resolved. */
export function authStatus(auth: AuthServer): AuthStatus {
  const { host, user } = auth.authorities
  return {
    cluster: auth.cluster,
    address: auth.address,
    backend: auth.config.auth.storage.type === 'etcd' ? 'etcd' : 'sqlite',
    storage: storageStatus(auth.storage!),
    host_ca: caStatus(host),
    user_ca: caStatus(user),
    handshake_gate: auth.handshakeGate?.toJSON() ?? {},
    ...(auth.recordingDir ? { recordings: auth.recordingDir } : {}),
    ...(auth.assignedLabelKeys ? { assigned_label_keys: auth.assignedLabelKeys } : {}),
  }
}

function caStatus(ca: Authority): CAStatus {
  return {
    phase: ca.rotation?.phase ?? 'standby',
    mode: ca.rotation?.mode ?? null,
    pins: ca.pins,
    last_rotated: ca.lastRotated === undefined ? null : statusTime(ca.lastRotated),
    expires: statusTime(ca.signingExpires),
    expired: ca.expired(Date.now()),
  }
}

function storageStatus(transport: StorageTransport): AuthStatus['storage'] {
  if (transport.type === 'sqlite') return { type: 'sqlite' }
  return { type: 'etcd', tls: transport.tls, plaintext_peers: transport.plaintextPeers }
}
