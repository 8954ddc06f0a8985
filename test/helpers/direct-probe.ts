// A client of a direct node's port (ssh_service.listen_addr) for tests: it connects with the
// given certificate (or none), asks for the SSH service in the one-line request proxies
// send, and prints as JSON what came back before the node closed the connection: `reply`
// (the text received) and `node` (the common name of the certificate the node presented).
// A standalone script, so that NAT tests can run it inside a network namespace.
//
//   node direct-probe.ts HOST PORT [CERT_FILE KEY_FILE]

import { readFileSync } from 'node:fs'
import { connect } from 'node:tls'
import { certSubject } from '../../shared/cert-subject.ts'

export interface ProbeResult {
  /** Everything the node sent: `{"ok":true}` and an SSH banner when a service opened. */
  reply: string
  /** The host ID in the node's certificate, when the handshake got that far. */
  node?: string
  error?: string
}

/** Reads until the node closes, or until the SSH server's banner shows the service opened. */
export function probe(host: string, port: number, credentials?: { certFile: string; keyFile: string }): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const result: ProbeResult = { reply: '' }
    const socket = connect({
      host,
      port,
      rejectUnauthorized: false,
      ...(credentials ? { cert: readFileSync(credentials.certFile), key: readFileSync(credentials.keyFile) } : {}),
    })
    const done = () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(result)
    }
    const timer = setTimeout(() => {
      result.error = 'no close within 15 s'
      done()
    }, 15_000)
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate()
      if (cert) result.node = certSubject(cert).commonName
      socket.write(JSON.stringify({ service: 'ssh', client: 'probe' }) + '\n')
    })
    socket.on('data', (chunk: Buffer) => {
      result.reply += chunk.toString('latin1')
      if (result.reply.includes('SSH-2.0-')) done()
    })
    socket.on('error', (error) => {
      result.error = error.message
    })
    socket.on('close', done)
  })
}

if (import.meta.main) {
  const [host, port, certFile, keyFile] = process.argv.slice(2)
  const result = await probe(host, Number(port), certFile ? { certFile, keyFile } : undefined)
  process.stdout.write(JSON.stringify(result) + '\n')
}
