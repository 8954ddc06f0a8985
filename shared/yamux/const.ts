// The wire constants of yamux (hashicorp/yamux spec.md) and the errors a session reports.
// Values here are fixed by the protocol: changing any of them breaks interoperability.

/** The only protocol version the spec defines; any other value is a protocol error. */
export const PROTO_VERSION = 0

/** Version (1) + type (1) + flags (2) + stream id (4) + length (4), all big-endian. */
export const HEADER_SIZE = 12

export const FrameType = {
  /** Carries `length` bytes of stream payload after the header. */
  Data: 0,
  /** `length` is a delta added to the sender's window; also carries SYN/ACK/FIN/RST alone. */
  WindowUpdate: 1,
  /** `length` is an opaque value echoed back with ACK; always stream id 0. */
  Ping: 2,
  /** `length` is a GoAwayCode; always stream id 0. */
  GoAway: 3,
} as const
export type FrameType = (typeof FrameType)[keyof typeof FrameType]

export const Flag = {
  /** Opens a stream (or marks a ping as a request). */
  SYN: 0x1,
  /** Accepts a stream (or marks a ping as a reply). */
  ACK: 0x2,
  /** Half-close: the sender will send no more data on the stream. */
  FIN: 0x4,
  /** Abort the stream at once, in both directions. */
  RST: 0x8,
} as const

export const GoAwayCode = {
  Normal: 0,
  ProtocolError: 1,
  InternalError: 2,
} as const

/**
 * Every stream starts with this receive window on both sides, without negotiation; a side
 * may only grow it (by a window update), never shrink it below this.
 */
export const INITIAL_STREAM_WINDOW = 256 * 1024

/** Stream ids are 32-bit; the Go reference stops one short of the top, and so do we. */
export const MAX_STREAM_ID = 0xffff_ffff

/**
 * Largest payload we put in one Data frame. Large frames keep the per-frame cost (a header
 * and a write call) small next to the payload; the cap keeps one stream from holding the
 * connection for long, so other streams' frames interleave.
 */
export const MAX_DATA_FRAME = 256 * 1024

/** Largest window a peer can hold: the window update delta and the window are 32-bit. */
export const MAX_WINDOW = 0xffff_ffff

// Errors. One class, told apart by `code` (the Node convention), with a fixed message per
// code so that logs read the same whichever side or layer reports them.

const messages = {
  ERR_YAMUX_INVALID_VERSION: 'invalid protocol version',
  ERR_YAMUX_INVALID_MSG_TYPE: 'invalid message type',
  ERR_YAMUX_PROTOCOL: 'yamux protocol error',
  ERR_YAMUX_UNKNOWN_STREAM: 'frame for a stream that was never opened',
  ERR_YAMUX_DUPLICATE_STREAM: 'duplicate stream initiated',
  ERR_YAMUX_RECV_WINDOW_EXCEEDED: 'receive window exceeded',
  ERR_YAMUX_RECV_BUFFER_EXCEEDED: "reset: the session's receive buffer is full and this stream held the most unread data",
  ERR_YAMUX_SEND_WINDOW_OVERFLOW: 'send window grown beyond 2^32-1',
  ERR_YAMUX_UNEXPECTED_FLAG: 'unexpected flag',
  ERR_YAMUX_SESSION_SHUTDOWN: 'session shutdown',
  ERR_YAMUX_STREAMS_EXHAUSTED: 'streams exhausted',
  ERR_YAMUX_REMOTE_GO_AWAY: 'remote end is not accepting connections',
  ERR_YAMUX_REMOTE_PROTOCOL_ERROR: 'remote end reported a protocol error',
  ERR_YAMUX_REMOTE_INTERNAL_ERROR: 'remote end reported an internal error',
  ERR_YAMUX_KEEPALIVE_TIMEOUT: 'keepalive timeout: no answer from the remote end',
  ERR_YAMUX_WRITE_TIMEOUT: 'connection write timeout',
  ERR_YAMUX_TIMEOUT: 'i/o deadline reached',
  ERR_YAMUX_INVALID_CONFIG: 'invalid yamux configuration',
  ERR_YAMUX_INTERNAL: 'internal error',
  ECONNRESET: 'yamux stream reset by the remote end',
  ECONNREFUSED: 'yamux stream refused by the remote end',
} as const

export type YamuxErrorCode = keyof typeof messages

export class YamuxError extends Error {
  readonly code: YamuxErrorCode
  constructor(code: YamuxErrorCode, detail?: string) {
    super(detail === undefined ? messages[code] : `${messages[code]}: ${detail}`)
    this.name = 'YamuxError'
    this.code = code
  }

  /** Errors caused by what the peer sent: answered with GoAway(protocol error). */
  get isProtocolError(): boolean {
    return protocolErrors.has(this.code)
  }
}

const protocolErrors: ReadonlySet<YamuxErrorCode> = new Set<YamuxErrorCode>([
  'ERR_YAMUX_INVALID_VERSION',
  'ERR_YAMUX_INVALID_MSG_TYPE',
  'ERR_YAMUX_PROTOCOL',
  'ERR_YAMUX_UNKNOWN_STREAM',
  'ERR_YAMUX_DUPLICATE_STREAM',
  'ERR_YAMUX_RECV_WINDOW_EXCEEDED',
  'ERR_YAMUX_SEND_WINDOW_OVERFLOW',
  'ERR_YAMUX_UNEXPECTED_FLAG',
])
