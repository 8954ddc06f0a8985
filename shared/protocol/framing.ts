// Newline-terminated JSON, as tunnel streams and user connections carry it: one object per
// line, each read by the parser of what that stream carries (control.ts, dial.ts). A line
// that is too long, not a JSON object or refused by its parser is a ProtocolError.

import type { Duplex } from 'node:stream'
import { ProtocolError } from './errors.ts'

const MAX_LINE_BYTES = 64 * 1024

/** How framing errors name the message they could not read: it has no type yet. */
const LINE = 'line'

/** Writes one message; `T` is what the stream carries (AgentMessageIn, DialRequestIn, …). */
export function writeMessage<T extends object>(stream: Duplex, message: T): boolean {
  return stream.write(JSON.stringify(message) + '\n')
}

function parseLine<T>(line: string, parse: (value: unknown) => T, what: string): T {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw new ProtocolError(LINE, undefined, `${what} is not valid JSON`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProtocolError(LINE, undefined, `${what} is not a JSON object`)
  return parse(value)
}

/**
 * Calls `onMessage` for every line on `stream` until it ends, as `parse` reads it. The
 * first line that is too long or refused destroys the stream with its ProtocolError (the
 * stream's 'error' listeners see it) and nothing after it is read.
 */
export function readMessages<T>(stream: Duplex, parse: (value: unknown) => T, onMessage: (message: T) => void): void {
  // A line's pieces before its newline, searched each once: a line sent a byte per frame
  // costs its length, not its length squared.
  let pieces: string[] = []
  let piecesLength = 0
  // Lines that came in the chunk being read when `onMessage` paused the stream: a pause holds
  // back the rest of that chunk too (many lines sent in one write), until the stream resumes.
  let held = ''
  /** Handles the whole lines of `text` (which starts a line); keeps its unfinished end. */
  const handle = (text: string): void => {
    let buffered = text
    for (let newline = buffered.indexOf('\n'); newline >= 0; newline = buffered.indexOf('\n')) {
      if (stream.isPaused()) {
        held = buffered
        return
      }
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      let message: T
      try {
        message = parseLine(line, parse, 'a control message')
      } catch (error) {
        stream.destroy(error as Error)
        return
      }
      onMessage(message)
      if (stream.destroyed) return
    }
    if (buffered.length > MAX_LINE_BYTES) stream.destroy(new ProtocolError(LINE, undefined, 'a control message is too long'))
    else if (buffered.length > 0) {
      pieces = [buffered]
      piecesLength = buffered.length
    }
  }
  stream.setEncoding('utf8')
  // Emitted before the stream flows again: what was held is handled before anything newer.
  stream.on('resume', () => {
    if (held === '' || stream.destroyed) return
    const text = held
    held = ''
    handle(text)
  })
  stream.on('data', (chunk: string) => {
    if (stream.destroyed) return
    const newline = chunk.indexOf('\n')
    if (newline < 0) {
      pieces.push(chunk)
      piecesLength += chunk.length
      if (piecesLength > MAX_LINE_BYTES) stream.destroy(new ProtocolError(LINE, undefined, 'a control message is too long'))
      return
    }
    const text = pieces.join('') + chunk
    pieces = []
    piecesLength = 0
    handle(text)
  })
}

/**
 * Reads exactly one line from the start of `stream`, as `parse` reads it, leaving every
 * later byte unread (pushed back) so that the rest of the stream can be piped as raw bytes.
 * Rejects with a ProtocolError for a line that is too long or refused.
 */
export function readFirstMessage<T>(stream: Duplex, parse: (value: unknown) => T, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const timer = setTimeout(() => finish(new ProtocolError(LINE, undefined, 'no request line arrived in time')), timeoutMs)
    const finish = (error?: Error, message?: T) => {
      clearTimeout(timer)
      stream.off('readable', onReadable)
      stream.off('error', onError)
      stream.off('end', onEnd)
      if (error) reject(error)
      else resolve(message as T)
    }
    const onError = (error: Error) => finish(error)
    const onEnd = () => finish(new ProtocolError(LINE, undefined, 'the stream ended before its request line'))
    const onReadable = () => {
      let chunk: Buffer | null
      while ((chunk = stream.read() as Buffer | null) !== null) {
        const newline = chunk.indexOf(0x0a)
        if (newline < 0) {
          chunks.push(chunk)
          size += chunk.length
          if (size > MAX_LINE_BYTES) return finish(new ProtocolError(LINE, undefined, 'the request line is too long'))
          continue
        }
        chunks.push(chunk.subarray(0, newline))
        const rest = chunk.subarray(newline + 1)
        if (rest.length > 0) stream.unshift(rest)
        try {
          return finish(undefined, parseLine(Buffer.concat(chunks).toString('utf8'), parse, 'the request line'))
        } catch (error) {
          return finish(error as Error)
        }
      }
    }
    stream.on('readable', onReadable)
    stream.on('error', onError)
    stream.on('end', onEnd)
    onReadable()
  })
}
