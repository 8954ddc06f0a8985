// The ciphers the node's SSH server offers. In SSH the client's order decides (OpenSSH lists
// chacha20-poly1305, then aes128-ctr, then AES-GCM), so the server chooses only by what it
// leaves out. ssh2 runs every cipher through Node's crypto (OpenSSL; its own native addon is
// never loaded, see patches/), but ChaCha20-Poly1305 computes Poly1305 in WebAssembly and
// AES-CTR adds a separate HMAC per packet: per byte, AES-GCM costs the node the least CPU on
// a CPU with AES instructions (`npm run bench:ssh-crypto`). So on such a CPU the node offers
// AES-GCM only (every OpenSSH client since 6.2 has it); on one without them ChaCha20 comes
// first, as it is then the faster, with AES still offered for clients that want it.

import { readFileSync } from 'node:fs'
import type { CipherAlgorithm } from 'ssh2'

/** With AES instructions: AES-GCM only, the client picks the key size. */
const AES_GCM_ONLY: CipherAlgorithm[] = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com']
/** Without them: ChaCha20 first, then every AES mode OpenSSH clients know. */
const CHACHA_FIRST: CipherAlgorithm[] = ['chacha20-poly1305@openssh.com', ...AES_GCM_ONLY, 'aes128-ctr', 'aes192-ctr', 'aes256-ctr']

/** The cipher list for ssh2's server, or undefined to keep ssh2's own when the CPU is unknown. */
export function serverCiphers(cpuInfo: string | null = readCpuInfo()): CipherAlgorithm[] | undefined {
  if (cpuInfo === null) return undefined
  return hasAesInstructions(cpuInfo) ? AES_GCM_ONLY : CHACHA_FIRST
}

/** x86's "flags" and arm64's "Features" lines of /proc/cpuinfo name the AES instructions "aes". */
export function hasAesInstructions(cpuInfo: string): boolean {
  return /^(flags|Features)\s*:.*\baes\b/m.test(cpuInfo)
}

function readCpuInfo(): string | null {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8')
  } catch {
    return null
  }
}
