// The SFTP version 3 wire format (draft-ietf-secsh-filexfer-02), as OpenSSH's sftp and scp
// speak it: packet types, status codes, open flags, and the framing of packets on a byte
// stream (a uint32 length, then the type byte and its payload). OpenSSH's own extensions
// that its clients use are named here too.

import type { Readable } from 'node:stream'
import { SshReader, sshString, uint32 } from '../../shared/ssh-wire.ts'

export const SFTP_VERSION = 3

export const FXP = {
  INIT: 1,
  VERSION: 2,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  LSTAT: 7,
  FSTAT: 8,
  SETSTAT: 9,
  FSETSTAT: 10,
  OPENDIR: 11,
  READDIR: 12,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  REALPATH: 16,
  STAT: 17,
  RENAME: 18,
  READLINK: 19,
  SYMLINK: 20,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
  NAME: 104,
  ATTRS: 105,
  EXTENDED: 200,
  EXTENDED_REPLY: 201,
} as const

export const STATUS = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  OP_UNSUPPORTED: 8,
} as const

/** The words OpenSSH's sftp prints for each status, sent as the status message. */
const STATUS_MESSAGES: Record<number, string> = {
  0: 'Success',
  1: 'End of file',
  2: 'No such file',
  3: 'Permission denied',
  4: 'Failure',
  5: 'Bad message',
  8: 'Operation unsupported',
}

/** SSH_FXF_*: how OPEN opens a file. */
export const OPEN_FLAGS = { READ: 0x01, WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10, EXCL: 0x20 } as const

/** The largest packet either side may send: OpenSSH's SFTP_MAX_MSG_LENGTH. */
export const MAX_PACKET_LENGTH = 256 * 1024
/** The most data one READ answers or one WRITE carries, leaving room for the packet's header. */
export const MAX_DATA_LENGTH = MAX_PACKET_LENGTH - 1024

/** The OpenSSH extensions this server offers in its VERSION packet (name → version). */
export const EXTENSIONS: [string, string][] = [
  ['posix-rename@openssh.com', '1'],
  ['hardlink@openssh.com', '1'],
  ['fsync@openssh.com', '1'],
  ['limits@openssh.com', '1'],
]

/** A status with an SFTP code, thrown by a request's handler and sent as its answer. */
export class SftpStatusError extends Error {
  readonly code: number
  constructor(code: number, message = STATUS_MESSAGES[code] ?? 'Failure') {
    super(message)
    this.code = code
  }
}

/** The SFTP status for a failed system call, as OpenSSH's sftp-server maps errno. */
export function statusOfError(error: unknown): SftpStatusError {
  if (error instanceof SftpStatusError) return error
  switch ((error as NodeJS.ErrnoException).code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EBADF':
    case 'ELOOP':
      return new SftpStatusError(STATUS.NO_SUCH_FILE)
    case 'EPERM':
    case 'EACCES':
    case 'EFAULT':
      return new SftpStatusError(STATUS.PERMISSION_DENIED)
    case 'ENAMETOOLONG':
    case 'EINVAL':
      return new SftpStatusError(STATUS.BAD_MESSAGE)
    case 'ENOSYS':
      return new SftpStatusError(STATUS.OP_UNSUPPORTED)
    default:
      return new SftpStatusError(STATUS.FAILURE)
  }
}

// ---- Packets ------------------------------------------------------------------------------

/** One packet: its type, and a reader over what follows the type byte. */
export interface Packet {
  type: number
  body: SshReader
}

/**
 * The packets of a byte stream, one at a time: the stream is read only as fast as packets
 * are taken, so a client that sends faster than files are written waits (bounded memory).
 */
export async function* readPackets(input: Readable): AsyncGenerator<Packet> {
  let pending: Buffer = Buffer.alloc(0)
  for await (const chunk of input as AsyncIterable<Buffer>) {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    while (pending.length >= 4) {
      const length = pending.readUInt32BE(0)
      if (length === 0 || length > MAX_PACKET_LENGTH) throw new Error(`SFTP packet of ${length} bytes (at most ${MAX_PACKET_LENGTH})`)
      if (pending.length < 4 + length) break
      const packet = pending.subarray(4, 4 + length)
      pending = pending.subarray(4 + length)
      yield { type: packet[0], body: new SshReader(packet.subarray(1), 'SFTP packet') }
    }
  }
}

/** A packet of `type` with its parts, each a ready-encoded buffer. */
export function packet(type: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from([type]), ...parts])
  return Buffer.concat([uint32(body.length), body])
}

export function statusPacket(id: number, status: SftpStatusError): Buffer {
  return packet(FXP.STATUS, uint32(id), uint32(status.code), sshString(status.message), sshString(''))
}

export function versionPacket(): Buffer {
  return packet(FXP.VERSION, uint32(SFTP_VERSION), ...EXTENSIONS.flatMap(([name, version]) => [sshString(name), sshString(version)]))
}
