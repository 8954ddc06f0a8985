// The ciphers the node's SSH server offers. In SSH the client's order decides, and OpenSSH
// lists chacha20-poly1305 first; ssh2 runs ChaCha20-Poly1305 in JavaScript (its native addon
// is not in the single executable), far slower per byte than AES, which Node runs in OpenSSL
// with the CPU's AES instructions. So on a CPU with AES instructions the node offers AES only
// (OpenSSH then picks aes128-ctr, first among AES in its own list; AES-GCM cost the node the
// same CPU per byte in `npm run bench:copy -- --cipher=aes128-gcm@openssh.com`); on one
// without them ChaCha20 comes first, as it is then the faster.

import { readFileSync } from 'node:fs'
import type { CipherAlgorithm } from 'ssh2'

/** Every AES mode OpenSSH clients know; the client picks among them. */
const AES_ONLY: CipherAlgorithm[] = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr']
/** Without them: ChaCha20 first, AES still offered for clients that want it. */
const CHACHA_FIRST: CipherAlgorithm[] = ['chacha20-poly1305@openssh.com', ...AES_ONLY]

/** The cipher list for ssh2's server, or undefined to keep ssh2's own when the CPU is unknown. */
export function serverCiphers(cpuInfo: string | null = readCpuInfo()): CipherAlgorithm[] | undefined {
  if (cpuInfo === null) return undefined
  return hasAesInstructions(cpuInfo) ? AES_ONLY : CHACHA_FIRST
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
