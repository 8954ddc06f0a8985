// The login records a session with a pty leaves, read back by util-linux's own readers
// (utmpdump, who, last), which know glibc's struct utmp: the layout is theirs, not ours.
// Then what must not happen: a file made where the system keeps none, a file of another
// layout written into.

import { execFileSync } from 'node:child_process'
import { chownSync, existsSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { LAYOUTS, type LoginRecordFiles, LoginRecords } from './login-records.ts'

const AT = Date.parse('2026-12-08T04:00:00.250Z')
const tools = ['utmpdump', 'who', 'last'].every((tool) => ['/usr/bin', '/bin'].some((dir) => existsSync(join(dir, tool))))
const x64 = process.arch === 'x64'

/** Empty record files in a directory of their own, as a system keeps them. */
function files(): LoginRecordFiles {
  const dir = tempDir('warren-login-records-')
  const made = { utmp: join(dir, 'utmp'), wtmp: join(dir, 'wtmp'), lastlog: join(dir, 'lastlog') }
  for (const file of Object.values(made)) writeFileSync(file, '')
  return made
}

function recorder(given: LoginRecordFiles, arch: NodeJS.Architecture = 'x64') {
  const out = new PassThrough()
  let text = ''
  out.on('data', (chunk) => (text += chunk))
  const log = createLogger('test', { stream: out, format: 'json', level: 'debug' })
  let now = AT
  const records = new LoginRecords({ files: given, arch, log, clock: () => now })
  const entries = () =>
    text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
  return {
    records,
    advance: (ms: number) => (now += ms),
    entries,
    /** The files a warning named, sorted. */
    warned: () =>
      entries()
        .filter((entry) => entry.level === 'warn')
        .map((entry) => entry.file)
        .sort(),
  }
}

/** utmpdump's fields of each record: type, pid (without its padding zeros), id, user, line, host, address, time. */
function dump(file: string): string[][] {
  const text = execFileSync('utmpdump', [file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => [...line.matchAll(/\[([^\]]*)\]/g)].map((match, i) => (i === 1 ? String(Number(match[1])) : match[1]!.trim())))
}

t.test('a session is in utmp while it runs, in wtmp from its start to its end, and in lastlog', { skip: !x64 || !tools ? 'needs x86-64 and util-linux' : false }, async (t) => {
  const given = files()
  const { records, advance } = recorder(given)
  const session = records.begin({ user: 'alice', uid: 1000, tty: '/dev/pts/7', pid: 4242, host: '10.1.2.3' })
  t.ok(session, 'recorded')
  t.same(
    dump(given.utmp),
    [['7', '4242', 'ts/7', 'alice', 'pts/7', '10.1.2.3', '10.1.2.3', '2026-12-08T04:00:00,250000+00:00']],
    'utmp: the login on its terminal, as sshd writes it',
  )
  t.match(execFileSync('who', [given.utmp], { encoding: 'utf8' }), /^alice\s+pts\/7\s+2026-12-08 04:00 \(10\.1\.2\.3\)\n$/, 'who lists it')

  advance(90_000)
  session!.end()
  t.same(dump(given.utmp), [['8', '4242', 'ts/7', '', 'pts/7', '', '0.0.0.0', '2026-12-08T04:01:30,250000+00:00']], 'utmp: the same slot, the login ended')
  t.equal(execFileSync('who', [given.utmp], { encoding: 'utf8' }), '', 'who lists no one')
  t.same(
    dump(given.wtmp).map((fields) => fields.slice(0, 5)),
    [
      ['7', '4242', 'ts/7', 'alice', 'pts/7'],
      ['8', '4242', 'ts/7', '', 'pts/7'],
    ],
    'wtmp: the login and its end',
  )
  const last = execFileSync('last', ['-f', given.wtmp, '-i', '--time-format', 'iso'], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } })
  t.match(last, /^alice\s+pts\/7\s+10\.1\.2\.3\s+2026-12-08T04:00:00\+00:00 - 2026-12-08T04:01:30\+00:00\s+\(00:01\)/m, 'last shows when it began and ended')

  const lastlog = readFileSync(given.lastlog)
  const entry = lastlog.subarray(1000 * LAYOUTS.x64!.lastlogBytes)
  t.equal(lastlog.length, 1001 * LAYOUTS.x64!.lastlogBytes, "lastlog: the login's entry, at its uid")
  t.equal(entry.readInt32LE(0), Math.floor(AT / 1000), 'when')
  t.equal(entry.subarray(4, 36).toString().replace(/\0+$/, ''), 'pts/7', 'on which terminal')
  t.equal(entry.subarray(36).toString().replace(/\0+$/, ''), '10.1.2.3', 'from where')
})

t.test(
  'a terminal used again takes its old slot; another terminal a new one; IPv6 and IPv4-mapped addresses',
  { skip: !x64 || !tools ? 'needs x86-64 and util-linux' : false },
  async (t) => {
    const given = files()
    const { records } = recorder(given)
    records.begin({ user: 'alice', uid: 1000, tty: '/dev/pts/7', pid: 100, host: '2001:db8::1' })!.end()
    const second = records.begin({ user: 'bob', uid: 1001, tty: '/dev/pts/8', pid: 200, host: '::ffff:192.0.2.9' })
    records.begin({ user: 'carol', uid: 1002, tty: '/dev/pts/7', pid: 300, host: 'laptop.example' })
    t.same(
      dump(given.utmp).map(([type, pid, , user, line, host, address]) => [type, pid, user, line, host, address]),
      [
        ['7', '300', 'carol', 'pts/7', 'laptop.example', '0.0.0.0'],
        ['7', '200', 'bob', 'pts/8', '192.0.2.9', '192.0.2.9'],
      ],
      'two slots: pts/7 taken again, pts/8 added',
    )
    t.equal(dump(given.wtmp)[0]![6], '2001:db8::1', 'an IPv6 address in all sixteen bytes')
    second!.end()
    t.same(
      dump(given.utmp).map(([type, , , user, line]) => [type, user, line]),
      [
        ['7', 'carol', 'pts/7'],
        ['8', '', 'pts/8'],
      ],
    )
  },
)

t.test("an address is written only with an address's or a name's characters", { skip: !x64 || !tools ? 'needs x86-64 and util-linux' : false }, async (t) => {
  const given = files()
  recorder(given).records.begin({ user: 'dave', uid: 1003, tty: '/dev/pts/9', pid: 400, host: '\u001b]0;owned\u0007 10.0.0.1' })
  t.same(
    dump(given.utmp).map((fields) => fields[5]),
    ['??0?owned??10.0.0.1'],
    'no terminal escape reaches who or last',
  )
})

t.test('no file is made where the system keeps none', async (t) => {
  const dir = tempDir('warren-login-records-')
  const given = { utmp: join(dir, 'utmp'), wtmp: join(dir, 'wtmp'), lastlog: join(dir, 'lastlog') }
  const { records, entries } = recorder(given)
  records.begin({ user: 'alice', uid: 1000, tty: '/dev/pts/7', pid: 1, host: '10.1.2.3' })!.end()
  t.notOk(existsSync(given.utmp) || existsSync(given.wtmp) || existsSync(given.lastlog), 'none of the three')
  t.same([...new Set(entries().map((entry) => entry.level))], ['debug'], 'told at debug level only')
  t.same([...new Set(entries().map((entry) => entry.file))].sort(), [given.lastlog, given.utmp, given.wtmp], 'for each')
  writeFileSync(given.utmp, '')
  records.begin({ user: 'bob', uid: 1001, tty: '/dev/pts/8', pid: 2, host: '10.1.2.4' })
  t.equal(statSync(given.utmp).size, LAYOUTS.x64!.utmpBytes, 'a file made since is written at the next session')
})

t.test('a file written for another layout is left as it is', async (t) => {
  const given = files()
  const foreign = Buffer.alloc(LAYOUTS.arm64!.utmpBytes, 1)
  writeFileSync(given.utmp, foreign)
  writeFileSync(given.wtmp, foreign)
  const { records, warned } = recorder(given, 'x64')
  records.begin({ user: 'alice', uid: 1000, tty: '/dev/pts/7', pid: 1, host: '10.1.2.3' })!.end()
  t.same(readFileSync(given.utmp), foreign, 'utmp unchanged')
  t.same(readFileSync(given.wtmp), foreign, 'wtmp unchanged')
  t.same(warned(), [given.utmp, given.wtmp], 'a warning for each, once')
})

t.test("arm64's records are 400 bytes, its times and session 64 bits wide", async (t) => {
  const given = files()
  const { records } = recorder(given, 'arm64')
  records.begin({ user: 'alice', uid: 2, tty: '/dev/pts/1', pid: 77, host: '10.1.2.3' })
  const record = readFileSync(given.utmp)
  t.equal(record.length, 400)
  t.equal(record.readInt16LE(0), 7, 'ut_type')
  t.equal(record.readInt32LE(4), 77, 'ut_pid')
  t.equal(record.readBigInt64LE(336), 77n, 'ut_session (long)')
  t.equal(record.readBigInt64LE(344), BigInt(Math.floor(AT / 1000)), 'ut_tv.tv_sec (64 bits)')
  t.equal(record.readBigInt64LE(352), 250_000n, 'ut_tv.tv_usec')
  t.same([...record.subarray(360, 364)], [10, 1, 2, 3], 'ut_addr_v6')
  t.equal(statSync(given.lastlog).size, 3 * 296, 'lastlog entries of 296 bytes (a 64-bit ll_time)')
  t.equal(
    new LoginRecords({ files: given, arch: 'riscv64', log: createLogger('test', { stream: new PassThrough() }) }).begin({
      user: 'a',
      uid: 1,
      tty: '/dev/pts/1',
      pid: 1,
      host: 'h',
    }),
    undefined,
    'another architecture: none',
  )
})

t.test("a session's end does not take the slot of a later session on the same terminal", { skip: !x64 || !tools ? 'needs x86-64 and util-linux' : false }, async (t) => {
  const given = files()
  const { records } = recorder(given)
  const first = records.begin({ user: 'alice', uid: 1000, tty: '/dev/pts/7', pid: 100, host: '10.1.2.3' })!
  // The terminal let go and given to a new session before the first one's end is written.
  records.begin({ user: 'bob', uid: 1001, tty: '/dev/pts/7', pid: 200, host: '10.1.2.4' })
  first.end()
  first.end()
  t.same(
    dump(given.utmp).map(([type, pid, , user]) => [type, pid, user]),
    [['7', '200', 'bob']],
    "bob's login stays in utmp",
  )
  t.match(execFileSync('who', [given.utmp], { encoding: 'utf8' }), /^bob\s+pts\/7\s/, 'who lists bob')
  t.equal(dump(given.wtmp).length, 3, 'wtmp: two logins and one end, once')
})

t.test('a FIFO, a symlink or a file of another owner is never written', async (t) => {
  const given = files()
  const elsewhere = join(tempDir('warren-login-records-'), 'precious')
  writeFileSync(elsewhere, 'keep me')
  rmSync(given.wtmp)
  execFileSync('mkfifo', [given.wtmp])
  rmSync(given.lastlog)
  symlinkSync(elsewhere, given.lastlog)
  const { records, warned } = recorder(given)
  // A FIFO without a reader would hold a blocking open for ever: the session starts at once.
  records.begin({ user: 'alice', uid: 1000, tty: '/dev/pts/7', pid: 1, host: '10.1.2.3' })!.end()
  t.equal(readFileSync(elsewhere, 'utf8'), 'keep me', "the symlink's target is untouched")
  t.same(warned(), [given.lastlog, given.wtmp], 'each given up, with a warning')
  if (process.getuid?.() === 0) {
    const other = files()
    chownSync(other.utmp, 65534, 65534)
    recorder(other).records.begin({ user: 'alice', uid: 1000, tty: '/dev/pts/7', pid: 1, host: '10.1.2.3' })
    t.equal(statSync(other.utmp).size, 0, "a utmp of another owner's is not written")
  }
})
