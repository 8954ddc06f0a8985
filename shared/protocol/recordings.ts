// Session recordings: a node's asciicast v2 file goes to the auth server in chunks addressed
// by their offset, so a chunk sent twice is stored once and an upload cut short resumes where
// the auth server's copy ends. Which node a recording belongs to is the auth server's to say,
// from the certificate (or the tunnel) that proved the sender.

import { NODE_SIGNATURE } from '../node-signature.ts'
import { flag, type In, lenient, number, object, text } from './shape.ts'

/** A recording's ID: the session ID its audit events carry (randomUUID on the node), `.N` for a connection's Nth pty. */
export const RECORDING_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\.[0-9]{1,4})?$/
/**
 * Past this a recording keeps its size: the node writes no more of the session's output
 * (the session goes on, and its audit events still say what ran). A device's storage must
 * not fill with one `cat` of a large file; 16 MiB holds hours of an ordinary shell.
 */
export const MAX_RECORDING_BYTES = 16 * 1024 * 1024
/** Raw bytes per chunk: in base64 it fits a tunnel's control line (64 KiB) with room to spare. */
export const RECORDING_CHUNK_BYTES = 32 * 1024
/** A chunk's body at its largest (base64 and JSON around it). */
export const RECORDING_CHUNK_BODY_BYTES = 64 * 1024

const chunkFields = {
  session_id: text({ max: 64 }),
  /** Where the bytes go in the file. */
  offset: number({ atLeast: 0, expected: 'a byte offset' }),
  /** The bytes, base64. */
  data: text({ max: Math.ceil(RECORDING_CHUNK_BYTES / 3) * 4 }),
  /** The last chunk: the session ended and the file is whole. */
  end: flag(),
}

export const RECORDING_CHUNK_BODY = object(chunkFields)
/** A chunk as the node sends it. */
export type RecordingChunkIn = In<typeof RECORDING_CHUNK_BODY>
/** A proxy carries a tunnelled node's chunk with the host ID its tunnel's certificate proved. */
export const PROXIED_RECORDING_CHUNK_BODY = object({
  host_id: text({ max: 253 }),
  ...chunkFields,
  /** The node's signature of the chunk (shared/node-signature.ts); absent from nodes of earlier versions. */
  signature: lenient(NODE_SIGNATURE),
})

/** How much of the recording the auth server holds: the next chunk starts there. */
export interface RecordingStored {
  length: number
  complete: boolean
  /** The cluster's `auth_service.recording`: at `off` nothing was kept, and the node stops recording. */
  recording: 'node' | 'off'
}

/** One recording as `warrenctl recordings ls` shows it. */
export interface RecordingJson {
  session_id: string
  user: string | null
  login: string | null
  node: string
  host_id: string
  /** Epoch milliseconds: the recording's header timestamp. */
  started: number
  duration_ms: number
  size: number
  complete: boolean
}

export interface RecordingList {
  recordings: RecordingJson[]
  /**
   * The live auth servers of the backend that keep their recordings in another folder than
   * this one's recording_dir: what was uploaded through them is missing from `recordings`.
   * Absent when nothing checks it (SQLite, recording off, auth servers of earlier versions).
   */
  not_shared_with?: string[]
}

/** GET /v1/recordings/:id: the asciicast v2 file, exactly as the node wrote it. */
export interface RecordingFile {
  session_id: string
  cast: string
}
