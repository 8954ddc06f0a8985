// The file operations an SFTP server reports on its standard error, as the node reads them:
// OpenSSH's sftp-server log lines (as its version 9.2 writes them with -e -l INFO) and
// Warren's own JSON lines, split however the pipe delivers them.

import t from 'tap'
import { type FileOperation, fileOperationLine, fileOperationSink, parseFileOperationLine } from './file-operations.ts'

const HOME = '/home/pi'

/** A sink for `HOME`, with what it reported and passed on, and a write that resolves once it took the data. */
function sinkOf(): { ops: FileOperation[]; other: string[]; write: (data: string | Buffer) => Promise<void> } {
  const ops: FileOperation[] = []
  const other: string[] = []
  const sink = fileOperationSink(
    HOME,
    (op) => ops.push(op),
    (line) => other.push(line),
  )
  return { ops, other, write: (data) => new Promise<void>((resolve) => sink.write(data, () => resolve())) }
}

t.test("OpenSSH's log lines, relative paths from the login's home", async (t) => {
  const lines: [string, FileOperation[]][] = [
    ['open "/tmp/b.txt" flags WRITE,CREATE,TRUNCATE mode 0644\r', [{ operation: 'open', path: '/tmp/b.txt' }]],
    ['close "/tmp/b.txt" bytes read 0 written 3', [{ operation: 'write', path: '/tmp/b.txt', bytes: 3 }]],
    [
      'close "b.txt" bytes read 7 written 3',
      [
        { operation: 'read', path: '/home/pi/b.txt', bytes: 7 },
        { operation: 'write', path: '/home/pi/b.txt', bytes: 3 },
      ],
    ],
    ['close "b.txt" bytes read 0 written 0', []],
    ['mkdir name "d" mode 0777', [{ operation: 'mkdir', path: '/home/pi/d' }]],
    ['rmdir name "/tmp/d"', [{ operation: 'rmdir', path: '/tmp/d' }]],
    ['remove name "/tmp/d/e.txt"', [{ operation: 'remove', path: '/tmp/d/e.txt' }]],
    ['posix-rename old "/tmp/b.txt" new "/tmp/d/e.txt"', [{ operation: 'rename', path: '/tmp/b.txt', target: '/tmp/d/e.txt' }]],
    ['rename old "a" new "b"', [{ operation: 'rename', path: '/home/pi/a', target: '/home/pi/b' }]],
    ['symlink old "a.txt" new "/tmp/l"', [{ operation: 'symlink', path: '/tmp/l', target: 'a.txt' }]],
    ['hardlink old "a.txt" new "h.txt"', [{ operation: 'link', path: '/home/pi/h.txt', target: '/home/pi/a.txt' }]],
    ['set "/tmp/d/e.txt" mode 0600', [{ operation: 'setstat', path: '/tmp/d/e.txt' }]],
    ['set "/tmp/d/e.txt" modtime 20261204-04:40:00', [{ operation: 'setstat', path: '/tmp/d/e.txt' }]],
    ['session opened for local user pi from [UNKNOWN]', []],
    ['opendir "/tmp/d/"', []],
    ['sent status No such file', []],
  ]
  for (const [line, ops] of lines) t.same(parseFileOperationLine(line, HOME), ops, line)
})

t.test("Warren's JSON lines read back; a line that is not one reports nothing", async (t) => {
  const op: FileOperation = { operation: 'rename', path: '/tmp/a', target: '/tmp/b' }
  t.same(parseFileOperationLine(fileOperationLine(op).trim(), HOME), [op])
  t.same(parseFileOperationLine('{"operation":"write","path":"/tmp/a","bytes":12}', HOME), [{ operation: 'write', path: '/tmp/a', bytes: 12 }])
  t.same(parseFileOperationLine('{"operation":"format","path":"/"}', HOME), [], 'an unknown operation')
  t.same(parseFileOperationLine('{"operation":"open"}', HOME), [], 'no path')
  t.same(parseFileOperationLine('{"operation":"write","path":"/a","bytes":-1}', HOME), [{ operation: 'write', path: '/a' }], 'a count that is no count is left out')
  t.same(parseFileOperationLine('{not json', HOME), [])
})

t.test('the sink joins lines split across writes, UTF-8 too, and drops an overlong line', async (t) => {
  const { ops, other, write } = sinkOf()
  const line = Buffer.from('remove name "é.txt"\n')
  await write(line.subarray(0, 14)) // cuts é in two
  await write(line.subarray(14))
  await write('hello\nmkdir name "x" mo')
  await write(`de 0755\n${'y'.repeat(20_000)}`)
  await write(`${'y'.repeat(20_000)}\nrmdir name "x"\n`)
  t.same(ops, [
    { operation: 'remove', path: '/home/pi/é.txt' },
    { operation: 'mkdir', path: '/home/pi/x' },
    { operation: 'rmdir', path: '/home/pi/x' },
  ])
  t.same(other, ['hello'], 'the overlong line is neither reported nor passed on')
})

t.test('paths that hold the separator or quotes split as a greedy pattern splits them', async (t) => {
  const greedy = (verb: string, line: string) => new RegExp(`^${verb} old "(.*)" new "(.*)"$`).exec(line)
  const cases = [
    'rename old "a" new "b" new "c"',
    'rename old "" new ""',
    'rename old "x"y" new "z"',
    'rename old "a"',
    'rename old " new "b"',
    'rename old "a" new "',
    'rename old "a" new "b',
  ]
  for (const line of cases) {
    const match = greedy('rename', line)
    const expected: FileOperation[] = match ? [{ operation: 'rename', path: `/home/pi/${match[1]}`.replace(/\/$/, ''), target: `/home/pi/${match[2]}`.replace(/\/$/, '') }] : []
    t.same(parseFileOperationLine(line, HOME), expected, line)
  }
})

t.test('a line longer than the limit is dropped when it arrives whole in one write', async (t) => {
  const { ops, other, write } = sinkOf()
  await write(`rename old "${'" new "'.repeat(4_000)}\nrmdir name "x"\n`)
  t.same(ops, [{ operation: 'rmdir', path: '/home/pi/x' }], 'only the line within the limit is reported')
  t.same(other, [], 'the overlong line is not passed on')
})
