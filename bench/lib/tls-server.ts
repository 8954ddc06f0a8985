// A plain Node TLS 1.3 server with a proxy's kind of certificates, for the handshake
// benchmark's baseline: ECDSA P-256, a client certificate required and verified against
// the given CAs, ALPN. It keeps every connection until the benchmark ends it.
//
//   node tls-server.ts --dir=DIR   (DIR holds key.pem, cert.pem and ca.pem)
//
// Announces {"port"} once it listens.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createServer } from 'node:tls'
import { parseArgs } from 'node:util'
import { TUNNEL_ALPN } from '../../shared/protocol/tunnel.ts'
import { announce, exitWithParent } from './child.ts'

const { values } = parseArgs({ options: { dir: { type: 'string' } } })
const read = (name: string) => readFileSync(join(values.dir!, name), 'utf8')
const server = createServer(
  { key: read('key.pem'), cert: read('cert.pem'), ca: read('ca.pem'), requestCert: true, rejectUnauthorized: true, ALPNProtocols: [TUNNEL_ALPN] },
  (socket) => {
    socket.on('error', () => {})
  },
)
server.listen(0, '127.0.0.1', () => {
  announce({ port: (server.address() as { port: number }).port })
})
process.on('SIGTERM', () => process.exit(0))
exitWithParent()
