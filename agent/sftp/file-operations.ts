// The file operations an SFTP session performs, as the node reports them (for an audit
// trail). The SFTP server runs as the login in a process of its own and tells the node on
// its standard error: OpenSSH's sftp-server in its `-e -l INFO` log lines, Warren's own as
// one JSON object a line. Both become the same FileOperation here.

import { posix } from 'node:path'
import { Writable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'

/** The longest line read from an SFTP server's standard error; a longer one is dropped. */
const MAX_LINE = 16 * 1024

export const FILE_OPERATIONS = ['open', 'read', 'write', 'remove', 'rename', 'mkdir', 'rmdir', 'setstat', 'symlink', 'link'] as const
export type FileOperationName = (typeof FILE_OPERATIONS)[number]

/** One file operation of an SFTP session. Paths are absolute on the node. */
export interface FileOperation {
  operation: FileOperationName
  path: string
  /** The new name of a rename; what a symlink or link points at. */
  target?: string
  /** Bytes read or written through one open file, counted when it is closed. */
  bytes?: number
}

/** The line Warren's own SFTP server writes on its standard error for `op`. */
export function fileOperationLine(op: FileOperation): string {
  return JSON.stringify(op) + '\n'
}

/**
 * The operations one line of an SFTP server's standard error reports (none for other
 * lines). Relative paths in OpenSSH's lines are relative to the login's home, where the
 * server starts.
 */
export function parseFileOperationLine(line: string, home: string): FileOperation[] {
  const text = line.replace(/\r$/, '')
  if (text.startsWith('{')) return parseJsonLine(text)
  const at = (path: string) => posix.resolve(home, path)
  let match: RegExpExecArray | null
  if ((match = /^open "(.*)" flags \S+ mode 0[0-7]+$/.exec(text))) return [{ operation: 'open', path: at(match[1]) }]
  if ((match = /^close "(.*)" bytes read (\d+) written (\d+)$/.exec(text))) {
    const ops: FileOperation[] = []
    const [read, written] = [Number(match[2]), Number(match[3])]
    if (read > 0) ops.push({ operation: 'read', path: at(match[1]), bytes: read })
    if (written > 0) ops.push({ operation: 'write', path: at(match[1]), bytes: written })
    return ops
  }
  if ((match = /^remove name "(.*)"$/.exec(text))) return [{ operation: 'remove', path: at(match[1]) }]
  if ((match = /^mkdir name "(.*)" mode 0[0-7]+$/.exec(text))) return [{ operation: 'mkdir', path: at(match[1]) }]
  if ((match = /^rmdir name "(.*)"$/.exec(text))) return [{ operation: 'rmdir', path: at(match[1]) }]
  let paths: [string, string] | undefined
  if ((paths = oldAndNew(text, 'rename') ?? oldAndNew(text, 'posix-rename'))) return [{ operation: 'rename', path: at(paths[0]), target: at(paths[1]) }]
  // A symlink's target is stored as given: relative to the link, not to the home.
  if ((paths = oldAndNew(text, 'symlink'))) return [{ operation: 'symlink', path: at(paths[1]), target: paths[0] }]
  if ((paths = oldAndNew(text, 'hardlink'))) return [{ operation: 'link', path: at(paths[1]), target: at(paths[0]) }]
  // One line per attribute set: size, mode, modtime, owner.
  if ((match = /^set "(.*)" (?:size|mode|modtime|owner) /.exec(text))) return [{ operation: 'setstat', path: at(match[1]) }]
  return []
}

/**
 * The two paths of `VERB old "A" new "B"`, split at the last `" new "` as a greedy pattern
 * would, but in time linear in the line: the paths are the login's to choose, and a pattern
 * with two greedy groups takes time quadratic in a line made of `" new "` over and over.
 */
function oldAndNew(text: string, verb: string): [string, string] | undefined {
  const head = `${verb} old "`
  if (!text.startsWith(head) || !text.endsWith('"')) return undefined
  const at = text.lastIndexOf('" new "')
  if (at < head.length || at + '" new "'.length > text.length - 1) return undefined
  return [text.slice(head.length, at), text.slice(at + '" new "'.length, -1)]
}

function parseJsonLine(text: string): FileOperation[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return []
  }
  if (typeof value !== 'object' || value === null) return []
  const { operation, path, target, bytes } = value as Record<string, unknown>
  if (!FILE_OPERATIONS.includes(operation as FileOperationName) || typeof path !== 'string') return []
  const op: FileOperation = { operation: operation as FileOperationName, path }
  if (typeof target === 'string') op.target = target
  if (typeof bytes === 'number' && Number.isSafeInteger(bytes) && bytes >= 0) op.bytes = bytes
  return [op]
}

/**
 * Where an SFTP server's standard error goes: each line that reports operations reaches
 * `report`, any other reaches `other`. A line longer than MAX_LINE is dropped rather than
 * held, since the process writing runs as the login.
 */
export function fileOperationSink(home: string, report: (op: FileOperation) => void, other: (line: string) => void): Writable {
  const decoder = new StringDecoder('utf8')
  let partial = ''
  let overlong = false
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      const lines = (partial + decoder.write(chunk)).split('\n')
      partial = lines.pop()!
      for (const line of lines) {
        // A line whose end came in this chunk is held to MAX_LINE too.
        if (!overlong && line.length <= MAX_LINE) {
          const ops = parseFileOperationLine(line, home)
          if (ops.length === 0) other(line)
          for (const op of ops) report(op)
        }
        overlong = false
      }
      if (partial.length > MAX_LINE) {
        partial = ''
        overlong = true
      }
      done()
    },
  })
}
