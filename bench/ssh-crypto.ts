// The CPU the node's SSH server spends on crypto alone, per cipher it could offer: ssh2's own
// cipher and decipher objects (lib/protocol/crypto.js, as patched) encrypt packets of 32 KiB
// (ssh2's largest channel data) and decrypt them again, in this process, with no sockets and
// no other work, so the figures hardly move with the machine's load as `bench:copy`'s do.
// This is the comparison agent/ssh-ciphers.ts chooses by.
//
//   npm run bench:ssh-crypto [-- --packets=2048 --rounds=5 --ssh2=DIR]
//
// CPU seconds per GB (process.cpuUsage) for one direction's encryption plus the other's
// decryption; the best of the rounds, which alternate the ciphers. --ssh2 loads another copy
// of the ssh2 package (an unpatched one, say) in place of the installed one.

import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { formatTable } from './lib/table.ts'

const { values } = parseArgs({
  options: {
    packets: { type: 'string', default: '2048' },
    rounds: { type: 'string', default: '5' },
    ssh2: { type: 'string' },
  },
})
const packets = Number(values.packets)
const rounds = Number(values.rounds)
if (!(packets > 0 && rounds > 0)) throw new Error('--packets and --rounds must be positive numbers')

/** What this benchmark uses of ssh2's crypto module, which has no published types. */
interface Ssh2Crypto {
  CIPHER_INFO: Record<string, { keyLen: number; ivLen: number }>
  MAC_INFO: Record<string, { len: number }>
  init: Promise<void>
  createCipher(config: object): { allocPacket(payloadLength: number): Buffer; encrypt(packet: Buffer): void; constructor: { name: string } }
  createDecipher(config: object): { decrypt(data: Buffer, start: number, end: number): void }
}

const require = createRequire(import.meta.url)
const modulePath = values.ssh2 ? join(values.ssh2, 'lib/protocol/crypto.js') : 'ssh2/lib/protocol/crypto.js'
const ssh2Crypto = require(modulePath) as Ssh2Crypto
await ssh2Crypto.init

/** The node's candidates: AES-GCM, AES-CTR with the MAC OpenSSH clients pick, ChaCha20-Poly1305. */
const CASES: Array<{ cipher: string; mac?: string }> = [
  { cipher: 'aes128-gcm@openssh.com' },
  { cipher: 'aes256-gcm@openssh.com' },
  { cipher: 'aes128-ctr', mac: 'hmac-sha2-256-etm@openssh.com' },
  { cipher: 'chacha20-poly1305@openssh.com' },
]
const PAYLOAD = 32_768
const payload = randomBytes(PAYLOAD)

/** CPU seconds per GB to encrypt and decrypt `packets` packets with one cipher. */
function measure(cipher: string, mac: string | undefined): { secondsPerGB: number; implementation: string } {
  const cipherInfo = ssh2Crypto.CIPHER_INFO[cipher]!
  const macInfo = mac ? ssh2Crypto.MAC_INFO[mac] : undefined
  const key = randomBytes(cipherInfo.keyLen)
  const iv = randomBytes(cipherInfo.ivLen)
  const macKey = macInfo ? randomBytes(macInfo.len) : undefined
  let written: Buffer[] = []
  let received = 0
  const encrypting = ssh2Crypto.createCipher({
    outbound: { onWrite: (chunk: Buffer) => written.push(Buffer.from(chunk)), cipherInfo, cipherKey: key, cipherIV: Buffer.from(iv), seqno: 0, macInfo, macKey },
  })
  const decrypting = ssh2Crypto.createDecipher({
    inbound: { onPayload: (data: Buffer) => void (received += data.length), decipherInfo: cipherInfo, decipherKey: key, decipherIV: Buffer.from(iv), seqno: 0, macInfo, macKey },
  })
  const start = process.cpuUsage()
  for (let i = 0; i < packets; i++) {
    const packet = encrypting.allocPacket(PAYLOAD)
    payload.copy(packet, 5)
    encrypting.encrypt(packet)
    const wire = Buffer.concat(written)
    written = []
    decrypting.decrypt(wire, 0, wire.length)
  }
  const used = process.cpuUsage(start)
  // A packet that failed to decrypt would have thrown; one lost would show here.
  if (received !== PAYLOAD * packets) throw new Error(`${cipher}: ${received} of ${PAYLOAD * packets} bytes came through`)
  return { secondsPerGB: (used.user + used.system) / 1e6 / ((PAYLOAD * packets) / 1e9), implementation: encrypting.constructor.name }
}

const loadAtStart = loadavg()[0]!
const best = new Map<string, { secondsPerGB: number; implementation: string }>()
for (let round = 0; round < rounds; round++) {
  for (const { cipher, mac } of CASES) {
    const name = mac ? `${cipher} + ${mac}` : cipher
    const result = measure(cipher, mac)
    if (result.secondsPerGB < (best.get(name)?.secondsPerGB ?? Infinity)) best.set(name, result)
  }
}

const when = new Date().toISOString().slice(0, 16).replace('T', ' ')
console.log(`${when} UTC, Node ${process.version}, load average ${loadAtStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end;`)
console.log(`${modulePath}; ${packets} packets of ${PAYLOAD} B each way, best of ${rounds} rounds\n`)
const fastest = Math.min(...[...best.values()].map((r) => r.secondsPerGB))
const rows = [...best].map(([name, r]) => [name, r.implementation, r.secondsPerGB.toFixed(2), (r.secondsPerGB / fastest).toFixed(2)])
console.log(formatTable(['cipher', 'ssh2 class', 'CPU s/GB', '× fastest'], rows))
