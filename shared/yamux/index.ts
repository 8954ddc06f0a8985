// Warren's yamux: stream multiplexing over one connection, wire-compatible with
// hashicorp/yamux (spec.md). The parts, one concept per file:
//
//   const.ts    frame types, flags, GoAway codes, window constants and the named errors
//   config.ts   Config: every tunable with its default and validation
//   frame.ts    header encoding and the incremental frame parser
//   session.ts  Session: the connection, stream ids, pings/keepalive, GoAway, shutdown
//   stream.ts   Stream: one Duplex with flow control (window updates, auto-tuning)
//
// Usage:
//   const session = createSession(socket, { client: true })
//   const stream = session.open()            // a Duplex
//   session.on('stream', (s) => s.pipe(s))   // streams the peer opens

export { type Config, defaultConfig, resolveConfig, verifyConfig } from './config.ts'
export {
  Flag,
  FrameType,
  GoAwayCode,
  HEADER_SIZE,
  INITIAL_STREAM_WINDOW,
  PROTO_VERSION,
  YamuxError,
  type YamuxErrorCode,
} from './const.ts'
export { decodeHeader, encodeHeader, type FrameHandler, type FrameHeader, FrameParser } from './frame.ts'
export { createSession, Session, type SessionOptions, type SessionStats } from './session.ts'
export { Stream } from './stream.ts'
