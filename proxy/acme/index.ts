// ACME certificates for the proxy's web port. The parts, one concept per file:
//
//   acme-manager.ts          AcmeManager: load or obtain, renew, emit 'certificate'
//   cert-store.ts            CertStore (where the account key and certificates persist), records
//   challenge-responder.ts   the challenges in flight, by SNI name (TLS-ALPN-01) and token (HTTP-01)
//   tls-alpn-certificate.ts  the RFC 8737 self-signed certificate with the acmeIdentifier extension
//   tls-alpn-hooks.ts        SNICallback/ALPNCallback that serve it only to `acme-tls/1` handshakes
//   acme-server.ts           trust for the ACME server's HTTPS, and the directory check
//   renewal.ts               when a certificate is due
//
// Their tests use test/helpers/pebble.ts (Pebble and its DNS on loopback) and
// test/helpers/challenge-test-server.ts.
//
// Usage:
//   const acme = new AcmeManager({ directoryUrl, email, domains: ['proxy.example.com'], store, log })
//   acme.on('certificate', ({ keyPem, certPem }) => { context = createSecureContext({ key: keyPem, cert: certPem }) })
//   await acme.start()
//   // per TLS connection, into the TLSSocket's SNICallback and (first) its ALPNCallback:
//   const hooks = tlsAlpnHooks((name) => acme.challengeContext(name), (name) => (acme.domains.includes(name) ? context : undefined))

export { type AcmeCertificate, AcmeManager, type AcmeManagerEvents, type AcmeOptions, type ChallengeType } from './acme-manager.ts'
export { ACCOUNT_KEY, type CertStore, certificateKey, MemoryCertStore } from './cert-store.ts'
export { AcmeError } from './errors.ts'
export { DEFAULT_RENEW_WHEN_REMAINING } from './renewal.ts'
export { ACME_IDENTIFIER_OID, ACME_TLS_ALPN, createTlsAlpnCertificate } from './tls-alpn-certificate.ts'
export { type ChallengeLookup, type TlsAlpnHooks, tlsAlpnHooks } from './tls-alpn-hooks.ts'
