// Tells the protocol of a connection from its first bytes. Every protocol we serve starts
// with a fixed pattern from the client, so a few bytes decide, and anything else is refused
// rather than guessed at.

export type Protocol = 'tls' | 'http' | 'ssh' | 'ssh-stream' | 'unknown'

const PATTERNS: ReadonlyArray<readonly [Buffer, Protocol]> = [
  // A TLS handshake record (content type 22) with a 3.x record version.
  [Buffer.from([0x16, 0x03]), 'tls'],
  // RFC 4253 4.2: the identification string.
  [Buffer.from('SSH-', 'latin1'), 'ssh'],
  // A user's plain SSH stream (shared/protocol/ssh-stream.ts): its first line.
  [Buffer.from('WARR', 'latin1'), 'ssh-stream'],
  ...['GET ', 'POST', 'HEAD', 'PUT ', 'DELE', 'OPTI', 'PATC', 'CONN'].map((method) => [Buffer.from(method, 'latin1'), 'http'] as const),
]

/** The most bytes sniffProtocol needs to decide. */
export const SNIFF_LENGTH = Math.max(...PATTERNS.map(([pattern]) => pattern.length))

/** The protocol `head` starts, or undefined while it is too short to tell. */
export function sniffProtocol(head: Buffer): Protocol | undefined {
  let undecided = false
  for (const [pattern, protocol] of PATTERNS) {
    const n = Math.min(head.length, pattern.length)
    if (head.compare(pattern, 0, n, 0, n) !== 0) continue
    if (n === pattern.length) return protocol
    undecided = true
  }
  return undecided ? undefined : 'unknown'
}
