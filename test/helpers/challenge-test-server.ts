// For tests: a TLS server that builds its sockets the way the proxy's TLS router does (a bare
// server-side TLSSocket per connection, its context fetched per connection) with the
// TLS-ALPN-01 hooks in front of its own ALPN choice. Ordinary connections get "hello\n";
// connections that answered a challenge are closed after the handshake.

import { createServer, type Server } from 'node:net'
import { type SecureContext, TLSSocket } from 'node:tls'
import { type ChallengeLookup, tlsAlpnHooks } from '../../proxy/acme/tls-alpn-hooks.ts'

export interface ChallengeTestServerOptions {
  challenge: ChallengeLookup
  /** The context for ordinary connections, fetched per connection. */
  context: () => SecureContext
  /** The context for an ordinary connection by SNI name, when it differs. */
  byName?: (servername: string) => SecureContext | undefined
  /** The server's own ALPN protocols. */
  protocols: string[]
}

export class ChallengeTestServer {
  /** Handshakes that answered a challenge. */
  answered = 0
  port = 0
  private readonly server: Server

  constructor(options: ChallengeTestServerOptions) {
    this.server = createServer((raw) => {
      const hooks = tlsAlpnHooks(options.challenge, options.byName)
      const socket: TLSSocket = new TLSSocket(raw, {
        isServer: true,
        secureContext: options.context(),
        SNICallback: hooks.SNICallback,
        ALPNCallback: (info) => hooks.selectAlpn(info) ?? options.protocols.find((name) => info.protocols.includes(name)),
      })
      socket.on('error', () => socket.destroy())
      socket.once('secure', () => {
        if (hooks.answering) {
          this.answered++
          socket.end()
        } else {
          socket.end('hello\n')
        }
      })
    })
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.port = (this.server.address() as { port: number }).port
    return this
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}
