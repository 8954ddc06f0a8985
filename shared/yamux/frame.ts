// Frame headers and the incremental parser. TCP (or TLS) hands us the byte stream cut at
// arbitrary points, so a header may straddle chunks and a Data body may span many. The
// parser never joins chunks: a header that straddles is gathered into a 12-byte scratch
// buffer, and a body is handed on as views (subarray) of the chunks it arrived in, so
// payload bytes are never copied on the way in.

import { FrameType, HEADER_SIZE, PROTO_VERSION, YamuxError } from './const.ts'

export interface FrameHeader {
  version: number
  type: number
  flags: number
  streamId: number
  length: number
}

/** A fresh 12-byte header. Small allocations come from Node's shared pool, so this is cheap. */
export function encodeHeader(type: number, flags: number, streamId: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_SIZE)
  buf[0] = PROTO_VERSION
  buf[1] = type
  buf.writeUInt16BE(flags, 2)
  buf.writeUInt32BE(streamId, 4)
  buf.writeUInt32BE(length, 8)
  return buf
}

/** Reads a header without validating it (the parser validates). */
export function decodeHeader(buf: Uint8Array, offset = 0): FrameHeader {
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  return {
    version: view[offset]!,
    type: view[offset + 1]!,
    flags: view.readUInt16BE(offset + 2),
    streamId: view.readUInt32BE(offset + 4),
    length: view.readUInt32BE(offset + 8),
  }
}

/** What the parser reports. Any method may throw a YamuxError to reject the frame. */
export interface FrameHandler {
  /**
   * A complete, valid header. For a Data frame, `length` body bytes follow through
   * `onBody` (in one or more pieces) and then `onBodyEnd`, even when `length` is 0.
   */
  onFrame(type: number, flags: number, streamId: number, length: number): void
  /** A piece of the current Data frame's body: a view into the received chunk. */
  onBody(piece: Buffer): void
  onBodyEnd(): void
}

export class FrameParser {
  readonly #handler: FrameHandler
  /** Gathers a header that arrives split across chunks. */
  readonly #scratch = Buffer.allocUnsafe(HEADER_SIZE)
  #scratchFill = 0
  /** Body bytes of the current Data frame still to come; -1 when between frames. */
  #bodyLeft = -1
  #stopped = false
  /** Complete headers parsed so far (diagnostics; the fuzz test counts with it). */
  framesParsed = 0

  constructor(handler: FrameHandler) {
    this.#handler = handler
  }

  /** Ignore everything from now on (the session is closing, or the input was bad). */
  stop(): void {
    this.#stopped = true
  }

  get stopped(): boolean {
    return this.#stopped
  }

  /** Feeds the next chunk of the byte stream. Throws a YamuxError on malformed input. */
  push(chunk: Buffer): void {
    const end = chunk.length
    let off = 0
    while (off < end && !this.#stopped) {
      if (this.#bodyLeft > 0) {
        const n = Math.min(this.#bodyLeft, end - off)
        this.#bodyLeft -= n
        // A body that is the whole chunk is passed as is, saving a view object.
        this.#handler.onBody(off === 0 && n === end ? chunk : chunk.subarray(off, off + n))
        off += n
        if (this.#bodyLeft === 0) {
          this.#bodyLeft = -1
          this.#handler.onBodyEnd()
        }
        continue
      }
      let src: Buffer
      let at: number
      if (this.#scratchFill === 0 && end - off >= HEADER_SIZE) {
        src = chunk
        at = off
        off += HEADER_SIZE
      } else {
        const n = Math.min(HEADER_SIZE - this.#scratchFill, end - off)
        chunk.copy(this.#scratch, this.#scratchFill, off, off + n)
        this.#scratchFill += n
        off += n
        if (this.#scratchFill < HEADER_SIZE) return
        this.#scratchFill = 0
        src = this.#scratch
        at = 0
      }
      this.#header(src, at)
    }
  }

  #header(src: Buffer, at: number): void {
    const version = src[at]!
    const type = src[at + 1]!
    if (version !== PROTO_VERSION) {
      this.#stopped = true
      throw new YamuxError('ERR_YAMUX_INVALID_VERSION', `got ${version}`)
    }
    if (type > FrameType.GoAway) {
      this.#stopped = true
      throw new YamuxError('ERR_YAMUX_INVALID_MSG_TYPE', `got ${type}`)
    }
    const flags = src.readUInt16BE(at + 2)
    const streamId = src.readUInt32BE(at + 4)
    const length = src.readUInt32BE(at + 8)
    this.framesParsed++
    this.#handler.onFrame(type, flags, streamId, length)
    if (type === FrameType.Data) {
      if (length === 0) this.#handler.onBodyEnd()
      else this.#bodyLeft = length
    }
  }
}
