// The proxy's front door: one TCP listener for every protocol (which peers may send a PROXY
// header: shared/address-list.ts). The parts, one concept per file:
//
//   proxy-protocol.ts  PROXY protocol v1/v2: incremental parser, encoders, named errors (addresses
//                      as bytes: shared/ip-bytes.ts)
//   sniff.ts           the protocol a connection speaks, from its first bytes
//   multiplexer.ts     Multiplexer: header, then sniff (for TLS, the whole ClientHello), then hand over
//   client-hello.ts    the ClientHello's ALPN names, and the alert a declined dial gets
//   tls-router.ts      handshake slots (shared/tls-gate), TLS termination and routing by ALPN
//
// Usage:
//   const mux = new Multiplexer({ trustedLoadBalancers: ['10.0.0.0/8'] })
//   mux.on('tls', createTlsRouter({ secureContext: () => context, alpn: { 'warren-tunnel': onTunnel } }))
//   mux.on('http', (conn) => httpServer.emit('connection', conn.socket))
//   await mux.listen('0.0.0.0', 3080)

export {
  DEFAULT_SNIFF_TIMEOUT_MS,
  Multiplexer,
  type MultiplexerEvents,
  type MultiplexerOptions,
  type RoutedConnection,
  type RoutedProtocol,
} from './multiplexer.ts'
export {
  encodeProxyV1,
  encodeProxyV2,
  type ProxyAddresses,
  type ProxyHeader,
  ProxyHeaderParser,
  type ProxyHeaderScan,
  ProxyProtocolError,
  type ProxyProtocolErrorCode,
  proxyHeaderVersion,
  scanProxyHeader,
  type Tlv,
} from './proxy-protocol.ts'
export { type Protocol, sniffProtocol } from './sniff.ts'
export { type AlpnHandler, createTlsRouter, DEFAULT_HANDSHAKE_TIMEOUT_MS, NO_ALPN, type TlsRouterOptions } from './tls-router.ts'
