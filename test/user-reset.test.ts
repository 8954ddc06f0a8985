// `warrenctl users reset` against real processes, as SECURITY.md advises it after a sign-up
// token leaked: an intruder signs up with the leaked invitation (an editor's, so it also
// holds admin rights) and holds live certificates. The reset ends the intruder's live
// OpenSSH session and refuses those certificates everywhere a lock is honoured although
// their dates are still valid: OpenSSH through the proxy, `warren ssh` over TLS and as a
// plain SSH stream (--fdpass), and warrenctl's admin requests through the proxy. `lock ls`
// shows the lock for what it is. The real person then signs up with the new invitation and
// every one of those paths works with the certificates it gets.

import { type ChildProcess, spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { PROFILE_FILES } from '../cli/profile.ts'
import { authAndProxy, openssh, ROOT, type RunResult, run, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { signUp } from './helpers/people.ts'
import { until } from './helpers/until.ts'

t.setTimeout(300_000)

const PASSWORD = 'a long enough passphrase'
const NODE = 'pi-reset'
const { auth, pin, proxy } = await authAndProxy(t)
const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${NODE}`])
t.teardown(() => node.stop())
await waitForNode(auth, NODE)
const login = testLogin()

/** A machine of its own: the directory where `warren login` writes its profile (absolute paths in its ssh_config). */
function machine(): { env: Record<string, string>; profile: string } {
  const home = tempDir('warren-home-')
  return { env: { WARREN_HOME: home }, profile: join(home, 'test-cluster') }
}

/** The sign-up token in the output of `users add` or `users reset`. */
const inviteOf = (result: RunResult) => /--invite=([0-9a-f]{32})$/m.exec(result.stdout)?.[1]

/** Every way a user's certificates reach the cluster through the proxy: whether each succeeded (exit status 0). */
async function reach(who: ReturnType<typeof machine>): Promise<Record<string, boolean>> {
  const [opensshCode, tlsCode, fdpassCode, adminCode] = await Promise.all([
    openssh(who.profile, [`${login}@${NODE}`, 'echo reached']).then((r) => r.code),
    warren(['ssh', `--identity=${who.profile}`, `${login}@${NODE}`, 'echo', 'reached']).then((r) => r.code),
    warren(['ssh', '--fdpass', `--identity=${who.profile}`, `${login}@${NODE}`, 'echo', 'reached']).then((r) => r.code),
    run(join(ROOT, 'cli/warrenctl.ts'), ['nodes', 'ls'], { env: who.env }).then((r) => r.code),
  ])
  return { openssh: opensshCode === 0, 'warren ssh': tlsCode === 0, 'warren ssh --fdpass': fdpassCode === 0, 'warrenctl through the proxy': adminCode === 0 }
}
const ALL_REACH = { openssh: true, 'warren ssh': true, 'warren ssh --fdpass': true, 'warrenctl through the proxy': true }
const NONE_REACH = { openssh: false, 'warren ssh': false, 'warren ssh --fdpass': false, 'warrenctl through the proxy': false }

const added = await auth.ctl(['users', 'add', 'alice', `--logins=${login}`, '--roles=access,editor'])
t.equal(added.code, 0, added.stderr)
const leaked = inviteOf(added)!
const intruder = machine()
const person = machine()
let liveSession: ChildProcess | undefined
let invitation: string | undefined

t.test('whoever signs up with the leaked invitation holds working certificates (the control)', async (t) => {
  const signed = await signUp([`--proxy=${proxy.web}`, `--invite=${leaked}`, `--ca-pin=${pin}`], intruder.env, PASSWORD)
  t.equal(signed.code, 0, signed.stderr)
  t.same(await reach(intruder), ALL_REACH, 'SSH and admin requests through the proxy work')
})

t.test('users reset refuses the certificates issued before it, live sessions included', async (t) => {
  liveSession = spawn('ssh', ['-F', join(intruder.profile, 'ssh_config'), '-o', 'BatchMode=yes', `${login}@${NODE}`, 'echo up; sleep 300'], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => liveSession?.kill('SIGKILL'))
  const exited = once(liveSession, 'exit')
  await once(liveSession.stdout!, 'data')

  const reset = await auth.ctl(['users', 'reset', 'alice'])
  t.equal(reset.code, 0, reset.stderr)
  invitation = inviteOf(reset)
  t.ok(invitation, 'a new invitation')
  // Locks reach every proxy within about 2 s; the bound only makes the old behaviour fail fast.
  const ended = await Promise.race([exited.then(([code]) => code), sleep(20_000).then(() => 'still running')])
  t.equal(ended, 255, 'the live OpenSSH session ended: the proxy closed its connection')

  const cert = new X509Certificate(readFileSync(join(intruder.profile, PROFILE_FILES.tlsCert)))
  t.ok(cert.validToDate.getTime() > Date.now() + 3600_000, 'the certificate is within its dates: the lock refuses it, not its expiry')
  t.same(await reach(intruder), NONE_REACH, 'SSH (TLS, plain stream, OpenSSH) and admin requests through the proxy are refused')

  const locks = await auth.ctl(['lock', 'ls'])
  t.match(locks.stdout, /^\S+\s+user:alice \(certificates issued before \d{4}-\d\d-\d\dT[\d:.]+Z\)\s+the user was reset\s+/m, 'lock ls shows which certificates the lock refuses')
})

t.test('the certificates from the new invitation work, the old ones stay refused', async (t) => {
  const signed = await signUp([`--proxy=${proxy.web}`, `--invite=${invitation}`, `--ca-pin=${pin}`], person.env, PASSWORD)
  t.equal(signed.code, 0, signed.stderr)
  t.same(await reach(person), ALL_REACH, "the person's new certificates reach the node and administer")
  t.same(await reach(intruder), NONE_REACH, "the intruder's stay refused")
})

t.test('certificates issued straight after a reset work: the reset ends on a whole second, as certificate dates do', async (t) => {
  const reset = await auth.ctl(['users', 'reset', 'alice'])
  t.equal(reset.code, 0, reset.stderr)
  const dir = tempDir('warren-user-')
  const signed = await auth.ctl(['auth', 'sign', '--user=alice', '--ttl=1h', `--out=${dir}`, '--format=openssh', `--proxy=${proxy.web}`])
  t.equal(signed.code, 0, signed.stderr)
  // Once the proxy refuses what the person held from before this reset, it knows the new lock.
  await until('the proxy to refuse the certificates from before the second reset', async () => (await openssh(person.profile, [`${login}@${NODE}`, 'true'])).code !== 0, {
    timeoutMs: 20_000,
  })
  const after = await openssh(dir, [`${login}@${NODE}`, 'echo reached'])
  t.equal(after.code, 0, after.stderr)
  t.equal(after.stdout, 'reached\n', 'the certificates signed right after the reset reach the node')
})

t.test('users rm, then users add under the same name: the old certificates stay refused, the new ones work with no lock to lift', async (t) => {
  const sign = async () => {
    const dir = tempDir('warren-user-')
    const signed = await auth.ctl(['auth', 'sign', '--user=alice', '--ttl=1h', `--out=${dir}`, '--format=openssh', `--proxy=${proxy.web}`])
    t.equal(signed.code, 0, signed.stderr)
    return dir
  }
  const before = await sign()
  t.equal((await openssh(before, [`${login}@${NODE}`, 'true'])).code, 0, 'the control: certificates from before the removal work')
  t.equal((await auth.ctl(['users', 'rm', 'alice'])).code, 0)
  t.equal((await auth.ctl(['users', 'add', 'alice', `--logins=${login}`])).code, 0)
  const after = await sign()
  await until('the proxy to refuse the certificates from before the removal', async () => (await openssh(before, [`${login}@${NODE}`, 'true'])).code !== 0, { timeoutMs: 20_000 })
  const reached = await openssh(after, [`${login}@${NODE}`, 'echo reached'])
  t.equal(reached.stdout, 'reached\n', `the new user's certificates reach the node: ${reached.stderr}`)
  const onTheName = (await auth.ctl(['lock', 'ls'])).stdout.split('\n').filter((line) => / user:alice /.test(line) && !line.includes('(certificates issued before'))
  t.same(onTheName, [], 'no lock on the name itself')
  t.not((await openssh(before, [`${login}@${NODE}`, 'true'])).code, 0, 'the old ones stay refused')
})
