// One user cannot switch off session recording for the others on a node. Stock OpenSSH
// clients log in to the node's SSH server, which records into the node's real outbox
// (NodeRecordings, with no way to the auth server, so everything waits): mallory opens five
// pty shells, then has each print more than her share of what may wait and keeps them open.
// Her recordings stop growing at her share, a session of another user is still recorded, and
// her next session is not, which an audit event says (naming the session, the user and why).

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createLogger } from '../shared/log.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { startTestSshServer, testSshUser } from '../test/helpers/node-ssh-server.ts'
import { until } from '../test/helpers/until.ts'
import { NodeRecordings, USER_SHARES } from './node-recordings.ts'

const cannot = process.getuid?.() !== 0 ? 'runs sessions as root' : spawnSync('ssh', ['-V']).status !== 0 ? 'needs the OpenSSH client' : undefined
t.setTimeout(180_000)

const dir = t.testdir()
const userCA = generateKeyPairSync('ed25519')
const hostKey = generateKeyPairSync('ed25519')
const user = testSshUser(dir, userCA.privateKey)
const log = createLogger('node', { level: 'error' })

/** The key with a certificate for `name` (its key ID), as `-i` takes it with `CertificateFile`. */
function certificate(name: string): string {
  return user.certify(name, { 'permit-pty': '' }, join(dir, `${name}-cert.pub`))
}

/** `ssh -tt` as `user`: what it printed so far, lines to type, and its end. */
function shell(t: Test, port: number, cert: string): { output: () => string; type: (line: string) => void; done: Promise<void> } {
  const child: ChildProcess = spawn('ssh', ['-tt', ...user.sshArgs(port, '-o', `CertificateFile=${cert}`)], { stdio: 'pipe' })
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString('latin1')
    // What mallory prints is only counted: a few megabytes of it need not be kept.
    if (output.length > 65_536) output = output.slice(-4096)
  })
  child.stdin!.on('error', () => {})
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  return { output: () => output, type: (line) => child.stdin!.write(`${line}\n`), done: new Promise((resolve) => child.once('close', () => resolve())) }
}

/** Types `echo` of a marker made by the shell (`$((N+0))`), so that the typed line's echo does not match, and waits for it. */
async function marked(session: ReturnType<typeof shell>, name: string, n: number, before = ''): Promise<void> {
  session.type(`${before}echo ${name}-$((${n}+0))`)
  await until(`${name}-${n}`, () => session.output().includes(`${name}-${n}\r\n`), { timeoutMs: 90_000, everyMs: 100 })
}

t.test("one user's sessions printing without end stop their own recordings, never another user's", { skip: cannot }, async (t) => {
  const dataDir = tempDir()
  const outbox = join(dataDir, 'node-recordings')
  // 4 MiB may wait in all, a quarter of it for each user; nothing is uploaded, so all of it waits.
  const maxWaitingBytes = 4 * 1024 * 1024
  const share = maxWaitingBytes / USER_SHARES
  const recordings = new NodeRecordings({ dataDir, direct: () => undefined, tunnel: () => undefined, log, maxWaitingBytes })
  t.teardown(() => recordings.stop())
  const events: Record<string, unknown>[] = []
  const { port } = await startTestSshServer(t, {
    hostKey: hostKey.privateKey,
    userCA: userCA.publicKey,
    home: dir,
    log,
    knownHosts: user.knownHosts,
    recordingDir: (user, name) => recordings.place(user, name),
    audit: (type, fields) => events.push({ type, ...fields }),
  })
  const mallory = certificate('mallory')
  const victim = certificate('victim')
  const sessionsOf = (user: string) => events.filter((e) => e.type === 'session.start' && e.user === user).map((e) => String(e.session_id))
  const onDisk = (id: string) => [join(outbox, `${id}.cast`), join(outbox, `${id}.cast.part`)].find((path) => existsSync(path))

  // Five shells, all of them recorded from their start, then each prints more than the share.
  const shells = Array.from({ length: 5 }, () => shell(t, port, mallory))
  for (const [i, session] of shells.entries()) await marked(session, 'ready', i)
  t.equal(sessionsOf('mallory').filter(onDisk).length, 5, "each of mallory's shells is being recorded")
  await Promise.all(shells.map((session, i) => marked(session, 'printed', i, `head -c ${Math.ceil(share * 0.9)} /dev/zero | base64 -w 120; `)))
  const held = sessionsOf('mallory').reduce((sum, id) => sum + statSync(onDisk(id)!).size, 0)
  t.ok(held <= share, `mallory's recordings hold ${held} bytes, within her share (${share}), though each of her shells printed more than that`)

  // Another user's interactive session is recorded, whole.
  const other = shell(t, port, victim)
  await marked(other, 'victim', 42)
  other.type('exit')
  await other.done
  const [victimSession] = sessionsOf('victim')
  await until('the recording of the victim to end', () => !existsSync(join(outbox, `${victimSession}.cast.part`)))
  t.ok(existsSync(join(outbox, `${victimSession}.cast`)), "the other user's session is recorded")
  t.match(readFileSync(join(outbox, `${victimSession}.cast`), 'utf8'), /victim-42/, "the other user's session is in its recording")

  // Mallory's next session is not recorded, and the audit trail says so, and why.
  const next = shell(t, port, mallory)
  await marked(next, 'unrecorded', 6)
  next.type('exit')
  await next.done
  const nextSession = sessionsOf('mallory').at(-1)!
  t.notOk(onDisk(nextSession), "mallory's next session has no recording")
  const skipped = events.filter((e) => e.type === 'recording.skipped')
  t.match(
    skipped.filter((e) => e.bytes_kept === undefined),
    [{ session_id: nextSession, recording: nextSession, user: 'mallory', login: 'root', client_addr: String, reason_code: 'user_share', reason: String }],
    'one recording.skipped event for a session not recorded, naming her session, her and why',
  )
  // Her shells whose recordings stopped growing while they went on say so too, with what each keeps.
  const cut = skipped.filter((e) => e.bytes_kept !== undefined)
  t.ok(cut.length > 0, `recordings cut short are audited (${cut.length})`)
  for (const e of cut) {
    t.match(e, { user: 'mallory', reason_code: 'user_share', reason: String, bytes_kept: Number }, 'a recording cut short by her share')
    t.equal(e.bytes_kept, statSync(onDisk(String(e.recording))!).size, 'the bytes it keeps are those on disk')
  }
  t.same(
    readdirSync(outbox).filter((name) => name.startsWith(victimSession)),
    [`${victimSession}.cast`],
    'the victim has the one recording, of the one session',
  )
})
