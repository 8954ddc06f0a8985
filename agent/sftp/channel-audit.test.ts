// What the node's audit reads from an SFTP session's bytes, packet by hand-made packet: only
// what the server answered as done, a file's bytes when it closes (or when the session ends),
// however the bytes are cut, and nothing more once a packet's length is out of bounds.
// Sessions with the real client and both servers: server.test.ts.

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { sshString, uint32, uint64 } from '../../shared/ssh-wire.ts'
import { findSftpServer } from '../sftp-server.ts'
import { warrenCommand } from '../warren-command.ts'
import { type FileOperation, SftpChannelAudit } from './channel-audit.ts'
import { FXP, packet, SftpStatusError, STATUS, statusPacket } from './protocol.ts'

const HOME = '/home/pi'
const ok = (id: number) => statusPacket(id, new SftpStatusError(STATUS.OK))
const handle = Buffer.from('h1')

/** The operations read from `exchange` (request, then its answer), each fed `piece` bytes at a time. */
function read(exchange: [Buffer, Buffer][], piece = Number.POSITIVE_INFINITY, end = true): FileOperation[] {
  const ops: FileOperation[] = []
  const audit = new SftpChannelAudit(HOME, (op) => ops.push(op))
  const feed = (bytes: Buffer, to: (chunk: Buffer) => void) => {
    for (let at = 0; at < bytes.length; at += piece) to(bytes.subarray(at, Math.min(bytes.length, at + piece)))
  }
  for (const [request, answer] of exchange) {
    feed(request, (chunk) => audit.fromClient(chunk))
    feed(answer, (chunk) => audit.fromServer(chunk))
  }
  if (end) audit.end()
  return ops
}

const session: [Buffer, Buffer][] = [
  [packet(FXP.OPEN, uint32(1), sshString('notes.txt'), uint32(0x1a), uint32(0)), packet(FXP.HANDLE, uint32(1), sshString(handle))],
  [packet(FXP.WRITE, uint32(2), sshString(handle), uint64(0n), sshString(Buffer.alloc(3000, 'x'))), ok(2)],
  [packet(FXP.WRITE, uint32(3), sshString(handle), uint64(3000n), sshString('refused')), statusPacket(3, new SftpStatusError(STATUS.FAILURE))],
  [packet(FXP.READ, uint32(4), sshString(handle), uint64(0n), uint32(100)), packet(FXP.DATA, uint32(4), sshString(Buffer.alloc(100)))],
  [packet(FXP.CLOSE, uint32(5), sshString(handle)), ok(5)],
  [packet(FXP.REMOVE, uint32(6), sshString('/etc/shadow')), statusPacket(6, new SftpStatusError(STATUS.PERMISSION_DENIED))],
  [packet(FXP.MKDIR, uint32(7), sshString('box'), uint32(0)), ok(7)],
  [packet(FXP.EXTENDED, uint32(8), sshString('posix-rename@openssh.com'), sshString('notes.txt'), sshString('box/notes.txt')), ok(8)],
]

t.test('what the server answered as done, and the bytes moved when the file closes', async (t) => {
  t.same(read(session), [
    { operation: 'open', path: '/home/pi/notes.txt', flags: 'write,create,truncate' },
    { operation: 'read', path: '/home/pi/notes.txt', bytes: 100 },
    { operation: 'write', path: '/home/pi/notes.txt', bytes: 3000 },
    { operation: 'mkdir', path: '/home/pi/box' },
    { operation: 'rename', path: '/home/pi/notes.txt', target: '/home/pi/box/notes.txt' },
  ])
  t.same(read(session, 1), read(session), 'the same a byte at a time')
})

t.test('a file left open when the session ends: its bytes reported then', async (t) => {
  t.same(read(session.slice(0, 2)), [
    { operation: 'open', path: '/home/pi/notes.txt', flags: 'write,create,truncate' },
    { operation: 'write', path: '/home/pi/notes.txt', bytes: 3000 },
  ])
})

t.test('a packet whose length is out of bounds ends the reading, as it ends the server: what it may have done is told', async (t) => {
  const bad = Buffer.concat([uint32(0), Buffer.from([FXP.REMOVE])])
  t.same(read([[bad, Buffer.alloc(0)], ...session.slice(6)]), [{ operation: 'unknown', path: '?', outcome: 'unknown' }], 'what it may have done is reported as unknown')
})

// ---- Against the real servers: what a hostile client sends to hide an operation or dress up another ----

const SERVERS = [...(findSftpServer() ? [{ what: "OpenSSH's sftp-server", argv: [findSftpServer()!, '-e'] }] : []), { what: "Warren's own", argv: warrenCommand('sftp-server') }]

/**
 * What `argv` answers to `requests` (one write, as a client pipelines them), started in `cwd`:
 * its input is held open until `answers` packets came, as a client holds its channel (OpenSSH's
 * server ends at its input's end without writing what it has left).
 */
function serve(argv: string[], requests: Buffer, cwd: string, answers: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd, env: { PATH: process.env.PATH }, stdio: ['pipe', 'pipe', 'ignore'] })
    let out = Buffer.alloc(0)
    const packets = () => {
      let count = 0
      for (let at = 0; at + 4 <= out.length && at + 4 + out.readUInt32BE(at) <= out.length; at += 4 + out.readUInt32BE(at)) count++
      return count
    }
    child.stdout.on('data', (chunk: Buffer) => {
      out = Buffer.concat([out, chunk])
      if (packets() >= answers) child.stdin.end()
    })
    child.on('error', reject)
    // A server that answers fewer than expected (none to a type it does not know) ends all the same.
    const deadline = setTimeout(() => child.stdin.end(), 5000)
    child.on('close', () => {
      clearTimeout(deadline)
      resolve(out)
    })
    child.stdin.write(requests)
  })
}

const init = packet(FXP.INIT, uint32(3))

/** The operations read from a session of `requests` with the server `argv` in `dir`: VERSION and an answer to each are awaited. */
function audited(argv: string[], dir: string, ...requests: Buffer[]): Promise<FileOperation[]> {
  return auditedRaw(argv, dir, Buffer.concat(requests), 1 + requests.length)
}

/** The operations read from a session of `bytes` after INIT (packets of lengths that lie, say), `answers` of them awaited. */
async function auditedRaw(argv: string[], dir: string, bytes: Buffer, answers: number): Promise<FileOperation[]> {
  const all = Buffer.concat([init, bytes])
  const out = await serve(argv, all, dir, answers)
  const ops: FileOperation[] = []
  const audit = new SftpChannelAudit(dir, (op) => ops.push(op))
  audit.fromClient(all)
  audit.fromServer(out)
  audit.end()
  return ops
}

for (const { what, argv } of SERVERS) {
  t.test(`a request ID used twice, or the version's number as an ID, pairs nothing wrongly (${what})`, async (t) => {
    const dir = t.testdir({ evidence: 'x', second: 'y' })
    const reused = await audited(argv, dir, packet(FXP.REMOVE, uint32(7), sshString('evidence')), packet(FXP.REMOVE, uint32(7), sshString('innocent')))
    t.same(reused, [{ operation: 'remove', path: join(dir, 'evidence') }], 'the file removed, not the one that is not there')
    t.notOk(existsSync(join(dir, 'evidence')))
    const three = await audited(argv, dir, packet(FXP.REMOVE, uint32(3), sshString('second')))
    t.same(three, [{ operation: 'remove', path: join(dir, 'second') }], 'request 3, sent with INIT, is not taken for answered by VERSION')
  })

  t.test(`more requests waiting than are kept: each reported as asked, none left out (${what})`, async (t) => {
    const dir = t.testdir({ evidence: 'x' })
    const noise = Array.from({ length: 1100 }, (_, i) => packet(FXP.STAT, uint32(100 + i), sshString('.')))
    const ops = await audited(argv, dir, packet(FXP.REMOVE, uint32(1), sshString('evidence')), ...noise)
    t.match(ops, [{ operation: 'remove', path: join(dir, 'evidence') }], 'the removal is reported')
  })
}

t.test('an answer of another ID than the oldest request waiting: from then on, what is asked is reported as asked', async (t) => {
  const ops = read([
    [packet(FXP.REMOVE, uint32(1), sshString('a')), ok(9)],
    [packet(FXP.REMOVE, uint32(2), sshString('b')), ok(2)],
  ])
  t.same(ops, [
    { operation: 'remove', path: '/home/pi/a', outcome: 'unknown' },
    { operation: 'remove', path: '/home/pi/b', outcome: 'unknown' },
  ])
})

t.test('a request the session ended before it was answered is reported as asked', async (t) => {
  t.same(read([[packet(FXP.REMOVE, uint32(1), sshString('a')), Buffer.alloc(0)]]), [{ operation: 'remove', path: '/home/pi/a', outcome: 'unknown' }])
})

t.test('paths as given (.. after a link is the kernel to follow), names that are no UTF-8 written so, copy-data a write', async (t) => {
  const copy = packet(FXP.EXTENDED, uint32(9), sshString('copy-data'), sshString(handle), uint64(0n), uint64(500n), sshString(Buffer.from('h2')), uint64(0n))
  const ops = read([
    [packet(FXP.REMOVE, uint32(1), sshString('lnk/../important')), ok(1)],
    [packet(FXP.REMOVE, uint32(2), sshString(Buffer.from([0x66, 0xff]))), ok(2)],
    [packet(FXP.OPEN, uint32(3), sshString('target'), uint32(0x1a), uint32(0)), packet(FXP.HANDLE, uint32(3), sshString(Buffer.from('h2')))],
    [copy, ok(9)],
  ])
  t.same(ops, [
    { operation: 'remove', path: '/home/pi/lnk/../important' },
    { operation: 'remove', path: '/home/pi/f\\xff' },
    { operation: 'open', path: '/home/pi/target', flags: 'write,create,truncate' },
    { operation: 'write', path: '/home/pi/target', bytes: 500 },
  ])
})

t.test('a path longer than the kernel takes is not kept (it cannot succeed); a handle longer than any server gives is not counted', async (t) => {
  const long = packet(FXP.REMOVE, uint32(1), sshString('x'.repeat(200_000)))
  t.same(read([[long, ok(1)]]), [])
  const hostile = read([[packet(FXP.OPEN, uint32(1), sshString('f'), uint32(1), uint32(0)), packet(FXP.HANDLE, uint32(1), sshString(Buffer.alloc(100_000)))]])
  t.same(hostile, [{ operation: 'open', path: '/home/pi/f', flags: 'read' }], 'the open is reported, its handle not kept')
})

for (const { what, argv } of SERVERS) {
  t.test(`a second INIT, or a type not both servers answer, cannot hide the removal that follows (${what})`, async (t) => {
    const dir = t.testdir({ evidence: 'x', more: 'y' })
    const twice = await audited(argv, dir, packet(FXP.INIT, uint32(3)), packet(FXP.REMOVE, uint32(3), sshString('evidence')))
    t.notOk(existsSync(join(dir, 'evidence')))
    t.match(twice, [{ operation: 'remove', path: join(dir, 'evidence') }], 'a second INIT')
    // OpenSSH's server answers no type it does not know; Warren's answers each.
    const unknownType = await auditedRaw(argv, dir, Buffer.concat([packet(99, uint32(7)), packet(FXP.REMOVE, uint32(7), sshString('more'))]), what.startsWith('OpenSSH') ? 2 : 3)
    t.ok(
      existsSync(join(dir, 'more')) || unknownType.some((op) => op.operation === 'remove' && op.path === join(dir, 'more')),
      `after a type 99, a removal done is not hidden (${JSON.stringify(unknownType)})`,
    )
  })

  t.test(`a packet shorter than its fields (OpenSSH reads on past it) is reported as a removal of unknown outcome (${what})`, async (t) => {
    const dir = t.testdir({ evidence: 'x' })
    const short = Buffer.concat([uint32(5), Buffer.from([FXP.REMOVE]), uint32(1), sshString('evidence')])
    const ops = await auditedRaw(argv, dir, short, 2)
    t.match(ops, [{ operation: 'remove', path: '?', outcome: 'unknown' }])
  })
}

t.test('pipelined requests that the server answers in time lose no pairing, however many', async (t) => {
  const dir = t.testdir({ evidence: 'x' })
  const noise = Array.from({ length: 5000 }, (_, i) => packet(FXP.STAT, uint32(100 + i), sshString('.')))
  const ops = await audited(SERVERS[0]!.argv, dir, ...noise, packet(FXP.REMOVE, uint32(1), sshString('evidence')))
  t.same(ops, [{ operation: 'remove', path: join(dir, 'evidence') }], 'the removal, its outcome known')
})

t.test('once pairing is lost, writes and mode changes through handles are still reported', async (t) => {
  const ops = read([
    [packet(FXP.OPEN, uint32(1), sshString('f'), uint32(0x1a), uint32(0)), packet(FXP.HANDLE, uint32(1), sshString(handle))],
    [packet(FXP.REMOVE, uint32(2), sshString('a')), ok(9)],
    [packet(FXP.WRITE, uint32(3), sshString(handle), uint64(0n), sshString('#!/bin/sh\n')), ok(3)],
    [packet(FXP.WRITE, uint32(4), sshString(Buffer.from('h9')), uint64(0n), sshString('other')), ok(4)],
    [packet(FXP.FSETSTAT, uint32(5), sshString(handle), uint32(4), uint32(0o4755)), ok(5)],
  ])
  t.match(ops, [
    { operation: 'open', path: '/home/pi/f', flags: 'write,create,truncate' },
    { operation: 'remove', path: '/home/pi/a', outcome: 'unknown' },
    { operation: 'setstat', path: '/home/pi/f', outcome: 'unknown' },
    { operation: 'write', path: '/home/pi/f', bytes: 10, outcome: 'unknown' },
    { operation: 'write', path: `handle:${Buffer.from('h9').toString('hex')}`, bytes: 5, outcome: 'unknown' },
  ])
})

t.test('a backslash in a name is doubled, so that no name reads as another written with escapes', async (t) => {
  const ops = read([
    [packet(FXP.REMOVE, uint32(1), sshString('f\\xff')), ok(1)],
    [packet(FXP.REMOVE, uint32(2), sshString(Buffer.from([0x66, 0xff]))), ok(2)],
  ])
  t.not(ops[0]!.path, ops[1]!.path)
})
