// What agents and proxies say to each other inside a tunnel. The tunnel is one TLS 1.3
// connection (ALPN `warren-tunnel`) carrying one yamux session. The agent opens one
// control stream; the proxy opens one stream per user connection to a service on the
// device. Both kinds begin with newline-terminated JSON messages.

import type { Duplex } from 'node:stream'

export const TUNNEL_ALPN = 'warren-tunnel'
/** Users' connections to nodes through a proxy (`warren proxy ssh`), on the web port. */
export const USER_ALPN = 'warren-ssh'
/**
 * The TLS server name every cluster client (agents, `warren ssh`, API calls) sends to a
 * proxy, whatever address it dials. A proxy with an ACME certificate for its public name
 * serves that certificate to browsers, and its host-CA certificate to this name, so pinned
 * joins and tunnels keep verifying against the cluster's CA. `.invalid` never resolves
 * (RFC 2606), so no public certificate can carry it.
 */
export const CLUSTER_SERVER_NAME = 'cluster.warren.invalid'
const MAX_LINE_BYTES = 64 * 1024

/**
 * A balancer decides which proxy a dial reaches, so an agent that holds tunnels to some
 * proxies lands on them again while it looks for the others. It lists the proxies it holds
 * in its ClientHello, as extra ALPN names after `warren-tunnel` (never chosen; ALPN is in
 * the clear, as the proxy IDs are in any proxy's certificate); a listed proxy refuses the
 * dial before any key exchange, with the alert no_application_protocol. A duplicate then
 * costs a TCP connection and a ClientHello instead of two TLS handshakes.
 */
const HELD_ALPN_PREFIX = 'warren-held:'
const MAX_ALPN_BYTES = 255

/** The ALPN names that list `proxyIds` as held: comma-separated, as few as 255-byte names allow. */
export function heldProxiesAlpn(proxyIds: string[]): string[] {
  const names: string[] = []
  let current = ''
  for (const id of proxyIds) {
    if (id === '' || id.includes(',') || Buffer.byteLength(HELD_ALPN_PREFIX + id) > MAX_ALPN_BYTES) continue
    const next = current === '' ? HELD_ALPN_PREFIX + id : `${current},${id}`
    if (Buffer.byteLength(next) > MAX_ALPN_BYTES) {
      names.push(current)
      current = HELD_ALPN_PREFIX + id
    } else {
      current = next
    }
  }
  if (current !== '') names.push(current)
  return names
}

/** Whether a client's ALPN names list `proxyId` as held. */
export function listsHeldProxy(protocols: readonly string[], proxyId: string): boolean {
  return protocols.some((name) => name.startsWith(HELD_ALPN_PREFIX) && name.slice(HELD_ALPN_PREFIX.length).split(',').includes(proxyId))
}

/** Agent → proxy on the control stream. */
export type AgentMessage =
  | { type: 'hello'; version: 1; labels: Record<string, string>; services: string[] }
  | { type: 'heartbeat'; labels: Record<string, string> }
  /** During a CA rotation: new certificates for the keys this tunnel was opened with. */
  | { type: 'renew' }
  /** The certificate just renewed (through any proxy), for the same key: each proxy keeps trusting the tunnel by it. */
  | { type: 'cert'; tls_cert: string }

/**
 * The longest window a proxy asks its agents to spread their returns to a proxy that
 * joined the live set over (`spread_ms`); agents ignore a longer one.
 */
export const MAX_RETURN_SPREAD_MS = 60_000

/** Proxy → agent on the control stream. */
export type ProxyMessage =
  | { type: 'welcome'; proxy_id: string; cluster_name: string }
  | { type: 'proxies'; ids: string[]; spread_ms?: number }
  /** The CAs to trust; when the first (signing) one did not issue the agent's certificate, it renews. */
  | { type: 'ca'; host_ca_certs: string[]; user_ca_ssh_keys: string[] }
  | { type: 'certs'; tls_cert: string; ssh_cert: string; host_ca_certs: string[]; user_ca_ssh_keys: string[] }
  | { type: 'renew_failed'; error: string }

/** The first line of a stream the proxy opens: which service on the device to reach. */
export interface DialRequest {
  service: 'ssh' | 'port'
  /** For service 'port': the name of a forwarded port in the node's config. */
  name?: string
  /** Who is connecting, for the node's logs. */
  client?: string
}

export type DialReply = { ok: true } | { ok: false; error: string }

export class ProtocolError extends Error {}

export function writeMessage(stream: Duplex, message: unknown): boolean {
  return stream.write(JSON.stringify(message) + '\n')
}

/**
 * Calls `onMessage` for every JSON line on `stream` until it ends. A line that is too long
 * or not a JSON object is a protocol error: the stream is destroyed with it.
 */
export function readMessages(stream: Duplex, onMessage: (message: Record<string, unknown>) => void): void {
  let buffered = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => {
    buffered += chunk
    let newline: number
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      let message: unknown
      try {
        message = JSON.parse(line)
      } catch {
        stream.destroy(new ProtocolError('a control message is not valid JSON'))
        return
      }
      if (typeof message !== 'object' || message === null || Array.isArray(message)) {
        stream.destroy(new ProtocolError('a control message is not a JSON object'))
        return
      }
      onMessage(message as Record<string, unknown>)
    }
    if (buffered.length > MAX_LINE_BYTES) stream.destroy(new ProtocolError('a control message is too long'))
  })
}

/**
 * Reads exactly one JSON line from the start of `stream`, leaving every later byte unread
 * (pushed back), so that the rest of the stream can be piped as raw bytes.
 */
export function readFirstMessage(stream: Duplex, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const timer = setTimeout(() => finish(new ProtocolError('no request line arrived in time')), timeoutMs)
    const finish = (error?: Error, message?: Record<string, unknown>) => {
      clearTimeout(timer)
      stream.off('readable', onReadable)
      stream.off('error', onError)
      stream.off('end', onEnd)
      if (error) reject(error)
      else resolve(message as Record<string, unknown>)
    }
    const onError = (error: Error) => finish(error)
    const onEnd = () => finish(new ProtocolError('the stream ended before its request line'))
    const onReadable = () => {
      let chunk: Buffer | null
      while ((chunk = stream.read() as Buffer | null) !== null) {
        const newline = chunk.indexOf(0x0a)
        if (newline < 0) {
          chunks.push(chunk)
          size += chunk.length
          if (size > MAX_LINE_BYTES) return finish(new ProtocolError('the request line is too long'))
          continue
        }
        chunks.push(chunk.subarray(0, newline))
        const rest = chunk.subarray(newline + 1)
        if (rest.length > 0) stream.unshift(rest)
        try {
          const message = JSON.parse(Buffer.concat(chunks).toString('utf8'))
          if (typeof message !== 'object' || message === null || Array.isArray(message)) throw new Error()
          return finish(undefined, message)
        } catch {
          return finish(new ProtocolError('the request line is not a JSON object'))
        }
      }
    }
    stream.on('readable', onReadable)
    stream.on('error', onError)
    stream.on('end', onEnd)
    onReadable()
  })
}
