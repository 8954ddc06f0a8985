// The ClientHello as the router reads it (the parser is shared with the auth server's gate:
// shared/tls-gate/client-hello.ts), and the alert it answers a declined dial with. The
// router uses the ALPN names to turn away a dial it would decline anyway (an agent that holds
// a tunnel here already) for the cost of a parse, instead of a TLS socket and a handshake.

export { type ClientHelloInfo, clientHelloAlpn, scanClientHello } from '../../shared/tls-gate/client-hello.ts'

/** The alert no_application_protocol (fatal), as a plaintext record: what OpenSSL sends when the ALPN callback declines. */
export const NO_APPLICATION_PROTOCOL_ALERT = Buffer.from([21, 0x03, 0x03, 0x00, 0x02, 2, 120])
