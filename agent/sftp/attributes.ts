// SFTP file attributes (ATTRS, draft-ietf-secsh-filexfer-02 section 5): what STAT answers
// and what SETSTAT and OPEN carry, and the `ls -l` line READDIR gives each name.

import type { Stats } from 'node:fs'
import type { SshReader } from '../../shared/ssh-wire.ts'
import { uint32 } from '../../shared/ssh-wire.ts'

const ATTR = { SIZE: 0x01, UIDGID: 0x02, PERMISSIONS: 0x04, ACMODTIME: 0x08, EXTENDED: 0x80000000 } as const

/** The attributes a client asks to set; absent ones stay as they are. */
export interface Attributes {
  size?: number
  uid?: number
  gid?: number
  /** Permission bits (and, as received, the file type bits, which are ignored). */
  mode?: number
  atime?: number
  mtime?: number
}

export function readAttributes(reader: SshReader): Attributes {
  const flags = reader.readUint32()
  const attrs: Attributes = {}
  if (flags & ATTR.SIZE) attrs.size = Number(reader.readUint64())
  if (flags & ATTR.UIDGID) {
    attrs.uid = reader.readUint32()
    attrs.gid = reader.readUint32()
  }
  if (flags & ATTR.PERMISSIONS) attrs.mode = reader.readUint32()
  if (flags & ATTR.ACMODTIME) {
    attrs.atime = reader.readUint32()
    attrs.mtime = reader.readUint32()
  }
  if (flags & ATTR.EXTENDED) {
    // Extended attributes name nothing this server knows: read past them.
    const count = reader.readUint32()
    for (let i = 0; i < count; i++) {
      reader.readString()
      reader.readString()
    }
  }
  return attrs
}

/** Every attribute of a file, as stat(2) gives them. */
export function encodeStats(stats: Stats): Buffer {
  const out = Buffer.alloc(32)
  out.writeUInt32BE(ATTR.SIZE | ATTR.UIDGID | ATTR.PERMISSIONS | ATTR.ACMODTIME, 0)
  out.writeBigUInt64BE(BigInt(stats.size), 4)
  out.writeUInt32BE(stats.uid, 12)
  out.writeUInt32BE(stats.gid, 16)
  out.writeUInt32BE(stats.mode, 20)
  out.writeUInt32BE(seconds(stats.atimeMs), 24)
  out.writeUInt32BE(seconds(stats.mtimeMs), 28)
  return out
}

/** No attributes: what a NAME answer to REALPATH or READLINK carries. */
export const NO_ATTRIBUTES = uint32(0)

function seconds(ms: number): number {
  // The protocol's times are uint32 seconds; clamp what does not fit rather than wrap.
  return Math.min(Math.max(Math.floor(ms / 1000), 0), 0xffffffff)
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
/** Files older than this show their year instead of their time, as ls does. */
const SIX_MONTHS_MS = 182 * 24 * 3600 * 1000

/** The `ls -l` line for `name` that READDIR sends (sftp's `ls -l` prints it as it is). */
export function longName(name: string, stats: Stats, now = Date.now()): string {
  const date = new Date(stats.mtimeMs)
  const day = `${MONTHS[date.getMonth()]} ${String(date.getDate()).padStart(2, ' ')}`
  const recent = Math.abs(now - stats.mtimeMs) < SIX_MONTHS_MS
  const when = recent ? `${pad2(date.getHours())}:${pad2(date.getMinutes())}` : ` ${date.getFullYear()}`
  const owner = String(stats.uid).padEnd(8)
  const group = String(stats.gid).padEnd(8)
  return `${modeString(stats.mode)} ${String(stats.nlink).padStart(4)} ${owner} ${group} ${String(stats.size).padStart(8)} ${day} ${when} ${name}`
}

function pad2(value: number): string {
  return String(value).padStart(2, '0')
}

/** `drwxr-xr-x` and friends, with setuid, setgid and sticky bits. */
function modeString(mode: number): string {
  const type = { 9604: 'd', 21609: 'l', 4802: 'c', 14406: 'b', 2401: 'p', 26411: 's' }[mode & 0o170000] ?? '-'
  const bits = (shift: number, special: number, letter: string) => {
    const r = mode & (4 << shift) ? 'r' : '-'
    const w = mode & (2 << shift) ? 'w' : '-'
    const x = mode & (1 << shift)
    const s = mode & special
    return r + w + (s ? (x ? letter : letter.toUpperCase()) : x ? 'x' : '-')
  }
  return type + bits(6, 0o4000, 's') + bits(3, 0o2000, 's') + bits(0, 0o1000, 't')
}
