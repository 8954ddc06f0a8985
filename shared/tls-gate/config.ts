// Every tunable of the TLS gate (gate.ts): how long a connection may take to deliver its
// ClientHello, how many handshakes run at once, and how much of either one source address
// may hold. Each with its default, the reason for it and where the number comes from.

export interface GateConfig {
  /**
   * A connection that has not delivered its whole ClientHello this long after it was
   * accepted is closed; until then it holds no handshake slot, only a file descriptor. A
   * client sends its ClientHello as soon as TCP is up, so it arrives one path delay after
   * the accept. 2 s: a lost first packet is resent after TCP's initial retransmission
   * timeout of 1 s (RFC 6298 section 2), with a second to spare for a long path.
   */
  helloTimeoutMs: number

  /**
   * Connections from one source address (an IPv6 /64) that may wait for their ClientHello
   * at once. Beyond this the *oldest* from that address are closed, rather than the new
   * one refused: a device sharing a NAT with an attacker gets in as long as its ClientHello
   * arrives before the attacker opens this many more connections. Devices send theirs
   * within a round trip, so even a large NAT has only a few in this state. 32.
   */
  maxPendingHelloPerAddress: number

  /**
   * A connection younger than this is never closed to make room for newer ones. A burst
   * of dials from one address (a fleet behind a NAT returning to a restarted proxy) is
   * accepted in one go and their ClientHellos are read only a moment later, in the next
   * turn of the event loop: they must not push each other out. Over the limit, an address
   * then holds at most what it opens in this time. 500 ms, a quarter of helloTimeoutMs.
   */
  pendingHelloGraceMs: number

  /**
   * The largest ClientHello accepted, in bytes of the handshake message. Real ones are
   * 0.2–2 KB (about 1.8 KB with a post-quantum key share); a longer one is refused before
   * it holds memory for long. 16 KiB, one TLS record's worth (RFC 8446 section 5.1).
   */
  maxClientHelloBytes: number

  /**
   * Handshakes in progress at once. Further ones wait their turn with their ClientHello
   * read. When a fleet reconnects at once this keeps the server finishing handshakes at the
   * rate it can instead of starting all of them and finishing none before their clients
   * give up; the kernel's accept queue stays empty, so health checks still get in. 128.
   */
  maxHandshakes: number

  /**
   * Of maxHandshakes, the slots only clients resuming a TLS session may take (their
   * ClientHello offers a ticket: pre_shared_key, or a non-empty session_ticket in TLS 1.2).
   * Known nodes returning to a restarted proxy resume, so anonymous traffic can never take
   * every slot from them; resuming clients also go first in the queue. A quarter of
   * maxHandshakes: 32.
   */
  reservedForResumption: number

  /**
   * Handshakes from one source address in progress at once; more from it wait in the
   * queue while other addresses take their turn (addresses are served round robin). It
   * takes maxHandshakes / this many addresses to hold every slot with handshakes that
   * stall after the ClientHello. Handshakes are CPU work, so a few at once already keep a
   * core busy for one address. 16.
   */
  maxHandshakesPerAddress: number

  /** Connections that may wait for a handshake slot; beyond this new ones are closed at once. 2048. */
  handshakeQueue: number

  /** Of the queue, what one source address may hold; beyond this its new ones are closed. Half of handshakeQueue: 1024. */
  maxQueuedPerAddress: number

  /**
   * A connection that waited this long for a slot is closed when its turn comes: its
   * client has likely given up (agents dial with a 10 s timeout). 5 s.
   */
  handshakeQueueWaitMs: number

  /**
   * A handshake not finished this long after it started is closed and frees its slot.
   * 10 s, as ASP.NET Kestrel's default; Node's own default (120 s) would let a client that
   * stops after its ClientHello hold a slot for two minutes.
   */
  handshakeTimeoutMs: number

  /**
   * Connections from one source address (an IPv6 /64) open at once on a server the gate
   * guards (`guard`: the auth server's port, a direct node's), from the accept to the close,
   * HTTP keep-alive included; beyond this a new one is closed at once. Without it one address
   * holds as many connections, each with its TLS and HTTP state (about 60 KB), as it opens.
   * The clients there are proxies, whose API client keeps at most 64 connections to a server
   * (shared/api-client.ts), direct nodes and admins at the auth server, and a proxy's dials
   * (one per user connection) at a direct node: 512 leaves room for several proxies or a site
   * of devices behind one NAT. Not applied on the proxy's port, where a fleet behind one
   * NAT holds a tunnel each (its multiplexer bounds what does not become one). 512.
   */
  maxOpenPerAddress: number
}

export const defaultGateConfig: Readonly<GateConfig> = Object.freeze({
  helloTimeoutMs: 2000,
  maxPendingHelloPerAddress: 32,
  pendingHelloGraceMs: 500,
  maxClientHelloBytes: 16 * 1024,
  maxHandshakes: 128,
  reservedForResumption: 32,
  maxHandshakesPerAddress: 16,
  handshakeQueue: 2048,
  maxQueuedPerAddress: 1024,
  handshakeQueueWaitMs: 5000,
  handshakeTimeoutMs: 10_000,
  maxOpenPerAddress: 512,
})

/** The defaults with `partial` over them; throws a RangeError naming the first unusable setting. */
export function resolveGateConfig(partial: Partial<GateConfig> = {}): GateConfig {
  const defined = Object.fromEntries(Object.entries(partial).filter(([, value]) => value !== undefined)) as Partial<GateConfig>
  const config: GateConfig = { ...defaultGateConfig, ...defined }
  // The shares follow the totals they are shares of, unless given.
  if (defined.reservedForResumption === undefined) config.reservedForResumption = Math.floor(config.maxHandshakes / 4)
  if (defined.maxQueuedPerAddress === undefined) config.maxQueuedPerAddress = Math.max(1, Math.floor(config.handshakeQueue / 2))
  for (const [key, value] of Object.entries(config)) {
    const zeroAllowed = key === 'reservedForResumption' || key === 'pendingHelloGraceMs'
    if (!Number.isSafeInteger(value) || value < (zeroAllowed ? 0 : 1)) {
      throw new RangeError(`${key} must be a ${zeroAllowed ? 'non-negative' : 'positive'} integer, got ${value}`)
    }
  }
  if (config.reservedForResumption >= config.maxHandshakes) {
    throw new RangeError(`reservedForResumption (${config.reservedForResumption}) must leave some of maxHandshakes (${config.maxHandshakes}) to other clients`)
  }
  return config
}
