// What the node's audit reads from an SFTP session's bytes, packet by hand-made packet: only
// what the server answered as done, a file's bytes when it closes (or when the session ends),
// however the bytes are cut, and nothing more once a packet's length is out of bounds.
// Sessions with the real client and both servers: server.test.ts.

import t from 'tap'
import { sshString, uint32, uint64 } from '../../shared/ssh-wire.ts'
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
    { operation: 'open', path: '/home/pi/notes.txt' },
    { operation: 'read', path: '/home/pi/notes.txt', bytes: 100 },
    { operation: 'write', path: '/home/pi/notes.txt', bytes: 3000 },
    { operation: 'mkdir', path: '/home/pi/box' },
    { operation: 'rename', path: '/home/pi/notes.txt', target: '/home/pi/box/notes.txt' },
  ])
  t.same(read(session, 1), read(session), 'the same a byte at a time')
})

t.test('a file left open when the session ends: its bytes reported then', async (t) => {
  t.same(read(session.slice(0, 2)), [
    { operation: 'open', path: '/home/pi/notes.txt' },
    { operation: 'write', path: '/home/pi/notes.txt', bytes: 3000 },
  ])
})

t.test('a packet whose length is out of bounds ends the reading, as it ends the server', async (t) => {
  const bad = Buffer.concat([uint32(0), Buffer.from([FXP.REMOVE])])
  t.same(read([[bad, Buffer.alloc(0)], ...session.slice(6)]), [])
})
