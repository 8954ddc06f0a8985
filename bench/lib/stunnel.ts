// The native TLS chain Warren's listener mode is held to, with Debian's stunnel4 (C, OpenSSL),
// in the shape of Warren's hops, one stunnel process in the place of each:
//
//   warren   client → TCP → `warren proxy port --listen` → TLS → proxy → TLS 1.3 + yamux → agent → TCP → server
//   stunnel  client → TCP → stunnel (client mode) → TLS → stunnel → TLS → stunnel → TCP → server
//
// A stunnel service either ends TLS or starts it, so the middle process runs two services
// joined by a loopback TCP connection of its own (a copy through the kernel that Warren's
// proxy does not make). TLS 1.3, each hop's default cipher (AES-GCM with AES instructions),
// Nagle off on every socket, no client certificates (they cost the handshake, not the bytes).
//
// Needs Debian's stunnel4.

import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, tempDir } from '../../test/helpers/cluster.ts'
import { selfSignedCertificate } from '../../test/helpers/self-signed-cert.ts'
import { stopProcess, waitForPort } from './sshd.ts'

const STUNNEL = '/usr/bin/stunnel4'

export interface StunnelChain {
  /** Where clients connect (the first stunnel). */
  port: number
  /** The user's, the proxy's and the node's place. */
  pids: { user: number; middle: number; node: number }
  stop(): Promise<void>
}

export function stunnelMissing(): string | undefined {
  return existsSync(STUNNEL) ? undefined : 'stunnel4 is not installed (apt-get install stunnel4)'
}

interface Service {
  name: string
  accept: number
  connect: number
  /** TLS towards `connect` (client mode), else TLS from `accept`. */
  client: boolean
}

export async function startStunnelChain(serverPort: number): Promise<StunnelChain> {
  const dir = tempDir('warren-bench-stunnel-')
  const { key, cert } = selfSignedCertificate()
  writeFileSync(join(dir, 'key.pem'), key, { mode: 0o600 })
  writeFileSync(join(dir, 'cert.pem'), cert)
  const [entry, firstTls, inner, secondTls] = [await freePort(), await freePort(), await freePort(), await freePort()]
  const started: ChildProcess[] = []
  const stop = async () => {
    for (const child of started.reverse()) await stopProcess(child)
  }
  /** One stunnel process with `services`, once it accepts on the first's port. */
  const stunnel = async (name: string, services: Service[]): Promise<number> => {
    const config = join(dir, `${name}.conf`)
    writeFileSync(
      config,
      [
        'foreground = yes',
        'pid =',
        'debug = err',
        'socket = l:TCP_NODELAY=1',
        'socket = r:TCP_NODELAY=1',
        ...services.flatMap((service) => [
          `[${service.name}]`,
          `client = ${service.client ? 'yes' : 'no'}`,
          `accept = 127.0.0.1:${service.accept}`,
          `connect = 127.0.0.1:${service.connect}`,
          'sslVersionMin = TLSv1.3',
          ...(service.client ? [] : [`cert = ${join(dir, 'cert.pem')}`, `key = ${join(dir, 'key.pem')}`]),
        ]),
        '',
      ].join('\n'),
    )
    const child = spawn(STUNNEL, [config], { stdio: ['ignore', 'ignore', 'pipe'] })
    started.push(child)
    let log = ''
    child.stderr!.on('data', (data) => (log += data))
    for (const service of services) await waitForPort(service.accept, () => `stunnel ${name} did not start: ${log}`)
    return child.pid!
  }
  try {
    // From the server's end, so that each hop's next one is listening when it starts.
    const node = await stunnel('node', [{ name: 'node', accept: secondTls, connect: serverPort, client: false }])
    const middle = await stunnel('middle', [
      { name: 'from-user', accept: firstTls, connect: inner, client: false },
      { name: 'to-node', accept: inner, connect: secondTls, client: true },
    ])
    const user = await stunnel('user', [{ name: 'user', accept: entry, connect: firstTls, client: true }])
    return { port: entry, pids: { user, middle, node }, stop }
  } catch (error) {
    await stop()
    throw error
  }
}
