// The crypto under the node's SSH server, as patches/ssh2+1.17.0.patch makes it: always Node's
// own (OpenSSL), never ssh2's optional native addon (built for whichever Node ran `npm install`,
// and absent from the single executable), with each key made a key object once per direction
// instead of imported again on every packet. Checked on the cipher objects ssh2 makes for real
// connections from stock OpenSSH, one per cipher family, each carrying data both ways.

import { spawn } from 'node:child_process'
import { generateKeyPairSync, KeyObject, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import type { CipherAlgorithm, Connection, MacAlgorithm } from 'ssh2'
import ssh2 from 'ssh2'
import t from 'tap'
import { openSshPrivateKey } from '../shared/ssh-key-file.ts'
import { hasAesInstructions, serverCiphers } from './ssh-ciphers.ts'

const require = createRequire(import.meta.url)
const ssh2Crypto = require('ssh2/lib/protocol/crypto.js') as { bindingAvailable: boolean }

/** The fields of ssh2's cipher and decipher objects that hold keys, by their class. */
const KEY_FIELDS: Record<string, string[]> = {
  AESGCMCipherNative: ['_encKey'],
  AESGCMDecipherNative: ['_decipherKey'],
  GenericCipherNative: ['_macKey'],
  GenericDecipherNative: ['_macKey'],
  ChaChaPolyCipherNative: ['_encKeyMain', '_encKeyPktLen'],
  ChaChaPolyDecipherNative: ['_decKeyMain', '_decKeyPktLen'],
}

interface Case {
  cipher: CipherAlgorithm
  mac?: MacAlgorithm
  classes: [cipher: string, decipher: string]
}

const CASES: Case[] = [
  { cipher: 'aes128-gcm@openssh.com', classes: ['AESGCMCipherNative', 'AESGCMDecipherNative'] },
  { cipher: 'aes256-gcm@openssh.com', classes: ['AESGCMCipherNative', 'AESGCMDecipherNative'] },
  { cipher: 'aes128-ctr', mac: 'hmac-sha2-256-etm@openssh.com', classes: ['GenericCipherNative', 'GenericDecipherNative'] },
  { cipher: 'aes256-ctr', mac: 'hmac-sha2-512', classes: ['GenericCipherNative', 'GenericDecipherNative'] },
  { cipher: 'chacha20-poly1305@openssh.com', classes: ['ChaChaPolyCipherNative', 'ChaChaPolyDecipherNative'] },
]

/** ssh2's per-connection state, which its types do not show. */
interface ProtocolState {
  _protocol: { _cipher: object; _decipher: object }
}

/** The server's cipher and decipher of each connection, once it is authenticated. */
const established: Array<{ cipher: object; decipher: object }> = []
// ssh2 reads OpenSSH's private key format.
const hostKey = openSshPrivateKey(generateKeyPairSync('ed25519').privateKey)
const server = new ssh2.Server(
  {
    hostKeys: [hostKey],
    algorithms: { cipher: CASES.map((c) => c.cipher), hmac: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512'] },
  },
  (client: Connection) => {
    client.on('authentication', (ctx) => ctx.accept())
    client.on('ready', () => {
      const { _cipher, _decipher } = (client as unknown as ProtocolState)._protocol
      established.push({ cipher: _cipher, decipher: _decipher })
    })
    // Every session echoes what it reads, then exits.
    client.on('session', (accept) => {
      accept().on('exec', (accept) => {
        const stream = accept()
        stream.on('data', (data: Buffer) => stream.write(data))
        stream.on('end', () => {
          stream.exit(0)
          stream.end()
        })
      })
    })
    client.on('error', () => {})
  },
)
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const port = (server.address() as AddressInfo).port
t.teardown(() => server.close())

t.test('ssh2 runs without its native addon, in a checkout as in the single executable', async (t) => {
  t.equal(ssh2Crypto.bindingAvailable, false)
  t.notOk(
    Object.keys(require.cache).some((path) => path.endsWith('.node')),
    'no native addon was loaded',
  )
})

for (const { cipher, mac, classes } of CASES) {
  t.test(`${cipher}${mac ? ' with ' + mac : ''}: Node's crypto, keys made once`, async (t) => {
    const input = randomBytes(1 << 20)
    const { code, stdout } = await runSsh(['-c', cipher, ...(mac ? ['-m', mac] : []), 'echo'], input)
    t.equal(code, 0)
    t.ok(stdout.equals(input), 'a MiB came back as it went')

    const { cipher: encrypting, decipher: decrypting } = established.at(-1)!
    t.same([encrypting.constructor.name, decrypting.constructor.name], classes, "Node's crypto, not the addon's")
    for (const state of [encrypting, decrypting]) {
      for (const field of KEY_FIELDS[state.constructor.name]!) {
        const key = (state as Record<string, unknown>)[field]
        t.ok(key instanceof KeyObject && key.type === 'secret', `${state.constructor.name}.${field} is a key object`)
      }
    }
  })
}

t.test('each packet gets random padding of its own, from a pool that is refilled', async (t) => {
  const { cipher } = established.find(({ cipher }) => cipher.constructor.name === 'AESGCMCipherNative')!
  const encrypting = cipher as { allocPacket(payloadLen: number): Buffer }
  const paddings = new Set<string>()
  let bytes = 0
  // A 1-byte payload gets 14 bytes of padding: 1,000 packets use the 4 KiB pool up three times over.
  for (let i = 0; i < 1000; i++) {
    const packet = encrypting.allocPacket(1)
    const padLen = packet[4]!
    paddings.add(packet.subarray(5 + 1, 5 + 1 + padLen).toString('hex'))
    bytes += padLen
  }
  t.ok(bytes > 3 * 4096, 'the pool was refilled')
  t.equal(paddings.size, 1000, 'no two packets share their padding')
})

t.test("a stock OpenSSH client, left to its own order, gets the cipher the node's offer leaves it", async (t) => {
  const offer = serverCiphers()!
  const node = new ssh2.Server({ hostKeys: [hostKey], algorithms: { cipher: offer } }, (client: Connection) => {
    client.on('handshake', (negotiated) => chosen.push(negotiated.cs.cipher, negotiated.sc.cipher))
    client.on('authentication', (ctx) => ctx.accept())
    client.on('session', (accept) =>
      accept().on('exec', (accept) => {
        const stream = accept()
        stream.exit(0)
        stream.end()
      }),
    )
    client.on('error', () => {})
  })
  const chosen: string[] = []
  node.listen(0, '127.0.0.1')
  await once(node, 'listening')
  t.teardown(() => node.close())
  const { code } = await runSsh(['true'], Buffer.alloc(0), (node.address() as AddressInfo).port)
  t.equal(code, 0)
  const expected = hasAesInstructions(readFileSync('/proc/cpuinfo', 'utf8')) ? 'aes128-gcm@openssh.com' : 'chacha20-poly1305@openssh.com'
  t.same(chosen, [expected, expected], 'both directions')
})

/** Stock OpenSSH's client against a test server, `input` on its stdin. */
async function runSsh(args: string[], input: Buffer, serverPort = port): Promise<{ code: number | null; stdout: Buffer }> {
  const options = ['-F', '/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR']
  const child = spawn('ssh', [...options, '-p', String(serverPort), 'test@127.0.0.1', ...args], { stdio: ['pipe', 'pipe', 'inherit'], timeout: 30_000 })
  const chunks: Buffer[] = []
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk))
  child.stdin.end(input)
  const [code] = await once(child, 'close')
  return { code, stdout: Buffer.concat(chunks) }
}
