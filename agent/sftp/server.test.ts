// Warren's own SFTP server against OpenSSH's real sftp client (`sftp -D` runs a server
// program directly, without ssh), and against hand-made packets for what a client never
// sends. The file operations the node's audit reads from the session's bytes
// (channel-audit.ts) are compared with those of OpenSSH's own sftp-server for the same commands.

import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { sshString, uint32 } from '../../shared/ssh-wire.ts'
import { findSftpServer } from '../sftp-server.ts'
import { warrenCommand } from '../warren-command.ts'
import { type FileOperation, SftpChannelAudit } from './channel-audit.ts'
import { FXP, packet, readPackets, STATUS } from './protocol.ts'
import { serveSftp } from './server.ts'

interface Result {
  code: number
  stdout: string
  stderr: string
  /** Where the bytes that crossed both ways are. */
  capture: string
}

/** `sftp -b -` with `batch`, served by `server` (a command line) in `cwd`; what crossed both ways is kept for `reported`. */
function sftp(server: string, cwd: string, batch: string): Promise<Result> {
  const capture = mkdtempSync(join(tmpdir(), 'warren-sftp-bytes-'))
  const wrapper = join(capture, 'server.sh')
  writeFileSync(wrapper, `#!/bin/sh\ntee ${capture}/requests | ${server} | tee ${capture}/answers\n`, { mode: 0o755 })
  captures.push(capture)
  server = wrapper
  return new Promise((resolve) => {
    // A clean environment: the test runner's NODE_OPTIONS would load its hooks into the server.
    const child = execFile('sftp', ['-b', '-', '-D', server], { cwd, env: { PATH: process.env.PATH }, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 255) : 0, stdout, stderr, capture })
    })
    child.stdin!.end(batch)
  })
}

const WARREN = warrenCommand('sftp-server').join(' ')

const captures: string[] = []
t.teardown(() => {
  for (const dir of captures) rmSync(dir, { recursive: true, force: true })
})

/** The packets of a captured stream, whole. */
function packetsOf(bytes: Buffer): Buffer[] {
  const packets: Buffer[] = []
  for (let at = 0; at + 4 <= bytes.length; at += 4 + bytes.readUInt32BE(at)) packets.push(bytes.subarray(at, at + 4 + bytes.readUInt32BE(at)))
  return packets
}

/**
 * The file operations the node's audit reads from the bytes of `run`, whose server started
 * in `home`: each answer given after its request, as on a live channel (clients use a
 * request ID again once it is answered). `piece` cuts each packet into chunks of that size.
 */
function reported({ capture }: Result, home: string, piece = Number.POSITIVE_INFINITY): FileOperation[] {
  const ops: FileOperation[] = []
  const audit = new SftpChannelAudit(home, (op) => ops.push(op))
  const inPieces = (packet: Buffer, to: (chunk: Buffer) => void) => {
    for (let at = 0; at < packet.length; at += piece) to(packet.subarray(at, Math.min(packet.length, at + piece)))
  }
  const requests = packetsOf(readFileSync(join(capture, 'requests')))
  let sent = 0
  for (const answer of packetsOf(readFileSync(join(capture, 'answers')))) {
    // INIT and VERSION carry no request ID.
    const id = answer[4] === FXP.VERSION ? undefined : answer.readUInt32BE(5)
    while (sent < requests.length) {
      const request = requests[sent++]
      inPieces(request, (chunk) => audit.fromClient(chunk))
      if (id === undefined ? request[4] === FXP.INIT : request[4] !== FXP.INIT && request.readUInt32BE(5) === id) break
    }
    inPieces(answer, (chunk) => audit.fromServer(chunk))
  }
  audit.end()
  return ops
}

t.test('put, get, ls, mkdir, rename, chmod, symlink, rm and rmdir with the real sftp client', async (t) => {
  const dir = t.testdir({ 'a.txt': 'hello\n' })
  const batch = [
    'put a.txt b.txt',
    'get b.txt c.txt',
    'mkdir box',
    'rename b.txt box/d.txt',
    'ls -l box',
    'chmod 600 box/d.txt',
    'symlink a.txt link',
    'ln box/d.txt hard.txt',
    'rm hard.txt',
    '',
  ].join('\n')
  const result = await sftp(WARREN, dir, batch)
  t.equal(result.code, 0, result.stderr)
  t.equal(readFileSync(join(dir, 'c.txt'), 'utf8'), 'hello\n', 'get')
  t.notOk(existsSync(join(dir, 'b.txt')), 'renamed away')
  t.equal(readFileSync(join(dir, 'box', 'd.txt'), 'utf8'), 'hello\n')
  t.equal(statSync(join(dir, 'box', 'd.txt')).mode & 0o777, 0o600, 'chmod')
  t.equal(readlinkSync(join(dir, 'link')), 'a.txt', 'symlink: target first, as OpenSSH sends it')
  t.notOk(existsSync(join(dir, 'hard.txt')), 'linked, then removed')
  t.match(result.stdout, /^-rw-r--r-- +1 +0 +0 +6 \w{3} [ \d]\d \d\d:\d\d d\.txt/m, 'ls -l shows the long name')

  const removed = await sftp(WARREN, dir, 'rm box/d.txt\nrmdir box\n')
  t.equal(removed.code, 0, removed.stderr)
  t.notOk(existsSync(join(dir, 'box')))

  const at = (name: string) => join(dir, name)
  t.same(reported(result, dir), [
    { operation: 'open', path: at('b.txt'), flags: 'write,create,truncate' },
    { operation: 'write', path: at('b.txt'), bytes: 6 },
    { operation: 'open', path: at('b.txt'), flags: 'read' },
    { operation: 'read', path: at('b.txt'), bytes: 6 },
    { operation: 'mkdir', path: at('box') },
    { operation: 'rename', path: at('b.txt'), target: at('box/d.txt') },
    { operation: 'setstat', path: at('box/d.txt') },
    { operation: 'symlink', path: at('link'), target: 'a.txt' },
    { operation: 'link', path: at('hard.txt'), target: at('box/d.txt') },
    { operation: 'remove', path: at('hard.txt') },
  ])
})

t.test("the same operations are read from a session with OpenSSH's sftp-server", { skip: !findSftpServer() && 'no OpenSSH sftp-server here' }, async (t) => {
  const batch = ['put a.txt b.txt', 'get b.txt c.txt', 'mkdir box', 'rename b.txt box/d.txt', 'chmod 600 box/d.txt', 'symlink a.txt link', 'rm box/d.txt', 'rmdir box', ''].join(
    '\n',
  )
  const ours = t.testdir({ 'a.txt': 'hello\n' })
  const theirs = join(ours, 'openssh')
  mkdirSync(theirs)
  writeFileSync(join(theirs, 'a.txt'), 'hello\n')
  const warren = await sftp(WARREN, ours, batch)
  const openssh = await sftp(findSftpServer()!, theirs, batch)
  t.equal(warren.code, 0, warren.stderr)
  t.equal(openssh.code, 0, openssh.stderr)
  const relative = (ops: FileOperation[], base: string) =>
    ops.map((op) => ({ ...op, path: op.path.replace(base, '~'), ...(op.target && { target: op.target.replace(base, '~') }) }))
  t.same(relative(reported(openssh, theirs), theirs), relative(reported(warren, ours), ours))
  t.ok(reported(openssh, theirs).length >= 8, 'every operation is there')
})

t.test('a large file goes up and down intact, through many pipelined requests', async (t) => {
  const dir = t.testdir()
  const data = randomBytes(8 * 1024 * 1024 + 123)
  writeFileSync(join(dir, 'big'), data)
  const result = await sftp(WARREN, dir, 'put big up\nget up down\n')
  t.equal(result.code, 0, result.stderr)
  t.ok(readFileSync(join(dir, 'up')).equals(data), 'uploaded')
  t.ok(readFileSync(join(dir, 'down')).equals(data), 'downloaded')
  const expected = [{ operation: 'open' }, { operation: 'write', bytes: data.length }, { operation: 'open' }, { operation: 'read', bytes: data.length }]
  t.match(reported(result, dir), expected, 'the audit counts every byte')
  t.same(reported(result, dir, 7), reported(result, dir), 'however the channel cuts the packets')
})

t.test('errors: no such file, and permission denied for a user who may not read', { skip: process.getuid?.() !== 0 && 'needs root to run as nobody' }, async (t) => {
  const dir = t.testdir({ 'secret.txt': 'root only\n', pub: {} })
  chmodSync(dir, 0o755)
  chmodSync(join(dir, 'pub'), 0o777)
  chmodSync(join(dir, 'secret.txt'), 0o600)
  const missing = await sftp(WARREN, dir, 'get nothing-here x\n')
  t.not(missing.code, 0)
  t.match(missing.stderr, /not found/)

  // The same server as an unprivileged user: the kernel refuses, and the client says why.
  const asNobody = `setpriv --reuid=65534 --regid=65534 --clear-groups ${WARREN}`
  const denied = await sftp(asNobody, dir, `get secret.txt ${join(dir, 'pub', 'leak')}\n`)
  t.not(denied.code, 0)
  t.match(denied.stderr, /Permission denied/)
  t.notOk(existsSync(join(dir, 'pub', 'leak')))
  writeFileSync(join(dir, 'pub', 'local.txt'), 'mine\n')
  const written = await sftp(asNobody, join(dir, 'pub'), `put local.txt ${join(dir, 'theirs.txt')}\n`)
  t.not(written.code, 0, 'nor write where it may not')
  t.match(written.stderr, /Permission denied/)
  t.notOk(existsSync(join(dir, 'theirs.txt')))
  const own = await sftp(asNobody, join(dir, 'pub'), 'mkdir made\n')
  t.equal(own.code, 0, own.stderr)
  t.equal(lstatSync(join(dir, 'pub', 'made')).uid, 65534, 'made by the user the server runs as')
})

// ---- The protocol, packet by packet ---------------------------------------------------------

/** A session over in-memory streams: send packets (or raw bytes), read answers. */
function session(options: { maxHandles?: number } = {}) {
  const input = new PassThrough()
  const output = new PassThrough()
  const served = serveSftp(input, output, options)
  served.catch(() => {}) // awaited by end()
  const answers = readPackets(output)
  return {
    send: (type: number, ...parts: Buffer[]) => input.write(packet(type, ...parts)),
    raw: (bytes: Buffer) => input.write(bytes),
    async next() {
      const { value } = await answers.next()
      return value!
    },
    async end() {
      input.end()
      await served
    },
  }
}

const INIT = [FXP.INIT, uint32(3)] as const

t.test('VERSION offers version 3 and the OpenSSH extensions', async (t) => {
  const s = session()
  s.send(...INIT)
  const version = await s.next()
  t.equal(version.type, FXP.VERSION)
  t.equal(version.body.readUint32(), 3)
  const extensions: string[] = []
  while (!version.body.atEnd()) {
    extensions.push(version.body.readText())
    version.body.readText()
  }
  t.same(extensions, ['posix-rename@openssh.com', 'hardlink@openssh.com', 'fsync@openssh.com', 'limits@openssh.com'])
  await s.end()
})

t.test('open handles are bounded; an unknown request is unsupported; rename does not replace', async (t) => {
  const dir = t.testdir({ a: 'a', b: 'b' })
  const s = session({ maxHandles: 2 })
  s.send(...INIT)
  await s.next()
  const open = (id: number) => s.send(FXP.OPEN, uint32(id), sshString(join(dir, 'a')), uint32(1), uint32(0))
  const status = async () => {
    const answer = await s.next()
    t.equal(answer.type, FXP.STATUS)
    return { id: answer.body.readUint32(), code: answer.body.readUint32(), message: answer.body.readText() }
  }
  open(1)
  open(2)
  open(3)
  t.equal((await s.next()).type, FXP.HANDLE)
  t.equal((await s.next()).type, FXP.HANDLE)
  t.same(await status(), { id: 3, code: STATUS.FAILURE, message: 'too many open handles (at most 2)' })

  s.send(99, uint32(4))
  t.same(await status(), { id: 4, code: STATUS.OP_UNSUPPORTED, message: 'Operation unsupported' })

  s.send(FXP.RENAME, uint32(5), sshString(join(dir, 'a')), sshString(join(dir, 'b')))
  t.match(await status(), { id: 5, code: STATUS.FAILURE })
  t.equal(readFileSync(join(dir, 'b'), 'utf8'), 'b', 'the existing file is kept')

  s.send(FXP.STAT, uint32(6), sshString(join(dir, 'none')))
  t.match(await status(), { id: 6, code: STATUS.NO_SUCH_FILE })

  s.send(FXP.READ, uint32(7), sshString(Buffer.from('nope')), Buffer.alloc(8), uint32(10))
  t.match(await status(), { id: 7, code: STATUS.FAILURE, message: 'invalid handle' })
  await s.end()
})

t.test('a session must begin with INIT, and an oversized packet ends it', async (t) => {
  const first = session()
  first.send(FXP.OPEN, uint32(1))
  await t.rejects(first.end(), /must begin with INIT/)

  const big = session()
  big.send(...INIT)
  await big.next()
  big.raw(uint32(1024 * 1024))
  await t.rejects(big.end(), /SFTP packet of 1048576 bytes/)
})
