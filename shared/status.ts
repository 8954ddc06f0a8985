// The status document of a `warren start` process, as its status socket answers it
// (status-socket.ts) and `warren status` prints it: the process, then one section per role
// that is running. Times are ISO 8601 strings; a section is missing while its role starts.

import { X509Certificate } from 'node:crypto'
import { issuedByAny } from './cert-subject.ts'
import { isoTime } from './duration.ts'
import type { OptimisingCompilersState } from './optimising-compilers.ts'
import { caPin } from './pin.ts'
import type { Pacing } from './slow-link-pacing.ts'

export interface WarrenStatus {
  process: ProcessStatus
  auth?: AuthStatus
  proxy?: ProxyStatus
  node?: NodeStatus
}

export interface ProcessStatus {
  pid: number
  version: string
  /** The roles this process runs (each has a section once it is up). */
  roles: string[]
  data_dir: string
  /** When this process image started. */
  started: string
  /** It replaced itself with a fresh image of the same command after joining (same PID). */
  fresh_image: boolean
  /** V8's young generation now, both semi-spaces (shared/heap-tuning.ts keeps it small). */
  young_generation_bytes: number
  /** The last SIGHUP: when, and why the config was not applied if it was not. */
  /** `not_applied`: the config file's keys changed since the start that only a restart applies. */
  last_reload: { time: string; ok: boolean; error?: string; not_applied?: string[] } | null
}

/** A certificate this process presents. */
export interface CertificateStatus {
  serial: string
  not_before: string
  not_after: string
  /** The pin of the trusted CA that issued it; null when none of them did. */
  issuer_pin: string | null
}

export interface CAStatus {
  /** `standby` when no rotation is in progress. */
  phase: string
  mode: 'auto' | 'manual' | null
  /** One pin per trusted key set, the signing one first. */
  pins: string[]
  last_rotated: string | null
  /** When the signing CA's certificate expires: a rotation before then gives a new one (README: "CA expiry"). */
  expires: string
  /** Whether it has expired (by the auth server's clock): it signs nothing until rotated. */
  expired: boolean
}

export interface AuthStatus {
  cluster: string
  /** Where it serves the auth API (a wildcard listen address shows as loopback). */
  address: string
  backend: 'sqlite' | 'etcd'
  /**
   * How the backend is reached. `plaintext_peers`: etcd peers not on loopback that see every
   * stored secret in the clear (auth_service.storage.insecure_plaintext), for an operator to notice.
   */
  storage: { type: 'sqlite' } | { type: 'etcd'; tls: boolean; plaintext_peers: string[] }
  host_ca: CAStatus
  user_ca: CAStatus
  /** The handshake gate's counts (shared/tls-gate/stats.ts). */
  handshake_gate: Record<string, number>
  /** With an etcd backend and `auth_service.recording` on: whether the auth servers of the backend share this one's recording_dir. */
  recordings?: RecordingDirStatus
  /** With an etcd backend: the keys kept for assignments, this server's and the live auth servers' (auth/assigned-label-keys.ts). */
  assigned_label_keys?: AssignedLabelKeysStatus
}

/** Auth servers sharing a backend keep the union of their `assigned_label_keys` (auth/assigned-label-keys.ts). */
export interface AssignedLabelKeysStatus {
  /** This server's `auth_service.assigned_label_keys`. */
  own: string[]
  /** What it judges by: the keys any live auth server of the backend lists. */
  effective: string[]
  /** The live auth servers whose list is not this one's. */
  differing: { auth_server_id: string; address: string; hostname: string; keys: string[] }[]
  /** When it last looked (every 5 s); null before it could. */
  last_check: string | null
}

/** Auth servers sharing a backend must share their recording_dir (auth/recording-dir-check.ts). */
export interface RecordingDirStatus {
  /** `auth_service.recording_dir`. */
  dir: string
  /** This auth server's ID in the check: its marker `<dir>/.warren-auth-server-<id>`, and its item in the backend. */
  auth_server_id: string
  /** The live auth servers of the backend whose marker is in `dir`: they keep their recordings here too. */
  shared_with: string[]
  /** Those whose marker is not: what is uploaded through them is not listed or played through this one, nor the other way round. */
  not_shared_with: string[]
  /** When it last looked (every 5 s); null before it could. */
  last_check: string | null
}

export interface ProxyTunnelStatus {
  host_id: string
  nodename: string
  /** Where the node's connection comes from (after a PROXY header, the real client). */
  remote_addr: string
  since: string
  /** As the node's own NodeTunnelStatus.pacing, for what this proxy sends down the tunnel. */
  pacing: Pacing
}

export interface ProxyStatus {
  proxy_id: string
  nodename: string
  cluster: string
  listen: { web: string; tunnel: string; multiplexed: boolean }
  certificate: CertificateStatus
  trusted_host_ca_pins: string[]
  /** The live proxy set as the auth server last told it, which this proxy announces to its nodes. */
  live_set: string[]
  tunnels: { count: number; hosts: ProxyTunnelStatus[] }
  handshake_gate: Record<string, number>
  /** Since when, and why, the identity in use is not the one saved in the data dir (a full disk: shared/identity-keeper.ts). */
  identity_unsaved?: { since: string; error: string }
  /** With `proxy_service.acme.enabled`. */
  acme?: AcmeStatus
}

export interface AcmeStatus {
  domains: string[]
  /** The certificate served to browsers; null while the cluster certificate is served instead. */
  certificate: { serial: string; not_after: string; fingerprint: string } | null
  /** Orders this process placed with the ACME server (0 when the certificate came from the backend). */
  orders: number
  /** Why the last attempt to obtain a certificate failed; null after a success. */
  last_error: string | null
}

export interface NodeTunnelStatus {
  proxy_id: string
  since: string
  /** The TLS session was resumed (a cheaper handshake) rather than made afresh. */
  resumed: boolean
  /**
   * 'on' when the tunnel was found on a slow link and its output is paced, so that one
   * session's copy does not hold the others' keystrokes back; 'unavailable' when found slow
   * without the means (no perl to limit the kernel's queue); 'off' otherwise.
   */
  pacing: Pacing
}

/** What a node can tell of its system clock. */
export interface ClockStatus {
  /** The system clock now, as the node reads it. */
  now: string
  /** Null while the clock agrees with the cluster's certificates. */
  problem: 'behind' | 'ahead' | null
  /** What showed it: which certificate looked outside its validity, and its dates. */
  evidence: string | null
  /**
   * How far the clock runs ahead of the auth server's, as the auth server showed when it
   * refused to recover a certificate still valid by its clock; absent unless it did. The
   * node judges its certificate by the auth server's clock meanwhile.
   */
  clock_ahead_ms?: number
}

export interface NodeStatus {
  mode: 'tunnel' | 'direct'
  host_id: string
  nodename: string
  cluster: string
  /** Where the node joined: an auth server (direct mode) or a proxy's web port. */
  auth_server: string
  labels: Record<string, string>
  certificate: CertificateStatus
  trusted_host_ca_pins: string[]
  /** The signed set of CAs the node holds (its version), and how many sets it refused since it started. */
  trust: { version: number; refused: number }
  /**
   * The labels the cluster assigns to the node (they win over `labels`, its own, where it
   * judges access), as the newest signed statement it took said, and when the cluster changed
   * them (null: none taken); and how many statements it refused since it started. Absent
   * while it holds none and refused none.
   */
  assigned_labels?: { labels: Record<string, string>; changed: string | null; refused: number }
  /** V8's optimising compilers: an agent alone turns them on at the first stream it serves. */
  optimising_compilers: OptimisingCompilersState
  /** Who holds a session's pty: the agent itself (with the system's perl), or util-linux `script` between it and the shell. */
  ptys: 'agent' | 'script'
  /** The system clock as the node can judge it by the cluster's certificates (agent/clock.ts). */
  clock: ClockStatus
  /** The SSH server's audit events waiting for the auth server, and those dropped when the queue was full. */
  events?: { queued: number; dropped: number }
  /** Since when, and why, the identity in use is not the one saved in the data dir (a full disk: shared/identity-keeper.ts). */
  identity_unsaved?: { since: string; error: string }
  /** The certificates' renewal (or recovery): its next try, and while tries fail, how many in a row and the last error. */
  renewal?: { next_try: string; failures: number; last_error: string | null }
  /** Tunnel mode. */
  tunnel?: {
    /** The (load-balanced) address the node dials. */
    address: string
    /** How often this process asked a proxy where the tunnels go (0: the address on disk was used). */
    discoveries: number
    /** One per proxy held. */
    proxies: NodeTunnelStatus[]
    /** The newest live proxy set the proxies announced, as the auth server signed it; null before any announced one. */
    live_set: string[] | null
    /** Sets a proxy announced without a valid signature of the auth server, refused since the node started. */
    live_sets_refused: number
  }
  /** Direct mode. */
  direct?: {
    /** Where proxies reach the node's services. */
    listen_addr: string
    /** The TLS gate in front of that address: connections waiting, handshakes, closes by reason. */
    handshake_gate: Record<string, number>
    heartbeats: { ok: number; failed: number; last_ok: string | null }
  }
}

/** Epoch ms as a status time. */
export function statusTime(epochMs: number): string {
  return isoTime(epochMs)
}

/** What a certificate's status says: serial, validity and the pin of the trusted CA that issued it. */
export function certificateStatus(certPem: string, trustedCAPems: string[]): CertificateStatus {
  const cert = new X509Certificate(certPem)
  const issuer = trustedCAPems.find((caPem) => issuedByAny(cert, [caPem]))
  return {
    serial: cert.serialNumber,
    not_before: statusTime(cert.validFromDate.getTime()),
    not_after: statusTime(cert.validToDate.getTime()),
    issuer_pin: issuer ? caPin(issuer) : null,
  }
}
