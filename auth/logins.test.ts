import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { withTxn } from '../test/helpers/backends.ts'
import type { Condition, Operation } from './backend/backend.ts'
import { SqliteBackend } from './backend/sqlite.ts'
import { credentialsKey, readCredentials } from './credentials.ts'
import { Invites } from './invites.ts'
import { Locked, Locks } from './locks.ts'
import { LOCKOUT, LoginRefused, Logins, SignupRefusal } from './logins.ts'
import { NodeDirectory } from './nodes.ts'
import { WeakPassword } from './passwords.ts'
import { TOKEN_NOT_FOUND, TokenRefusal, TokenService } from './tokens.ts'
import { TOTP, totpCode } from './totp.ts'
import { MAX_USER_CERT_TTL_MS, UserDirectory, UserError } from './users.ts'

const PASSWORD = 'correct horse battery'

/** That `promise` rejects with an instance of `type` (and, when given, that message). */
async function refused(t: Test, promise: Promise<unknown>, type: new (...args: never[]) => Error, message?: string, what?: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(error instanceof type, `${what ?? 'refused'}: ${type.name} (${(error as Error | undefined)?.message})`)
  if (message !== undefined) t.equal((error as Error).message, message)
}

function setup(t: Test) {
  let now = 1_765_000_000_000
  const clock = () => now
  const dir = t.testdir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const tokens = new TokenService(backend, [], clock)
  const users = new UserDirectory(backend)
  const locks = new Locks({ backend, nodes: new NodeDirectory(backend, 30_000), users, clock })
  const lockMade = async () => {}
  const logins = new Logins({ backend, tokens, users, locks, clusterName: () => 'test-cluster', clock })
  const invites = new Invites({ backend, tokens, users, locks, lockMade, clock })
  return { dir, backend, tokens, users, locks, logins, invites, now: () => now, advance: (ms: number) => (now += ms) }
}

/** Adds alice and accepts her invitation; the TOTP secret she enrolled. */
async function signedUp(s: ReturnType<typeof setup>): Promise<string> {
  const { invitation } = await s.invites.addUser('alice', ['root'], ['access'], 3_600_000)
  const started = await s.logins.startSignup(invitation.token)
  await s.logins.completeSignup(invitation.token, PASSWORD, totpCode(started.secret, s.now()))
  s.advance(TOTP.stepMs)
  return started.secret
}

t.test('an invitation: whose it is, a second factor offered, then password and first code; the token is spent', async (t) => {
  const s = setup(t)
  const { invitation } = await s.invites.addUser('alice', ['root'], ['access'], 3_600_000)
  t.same(invitation.record.roles, ['signup'])
  t.equal(invitation.record.user, 'alice')
  t.ok(invitation.record.singleUse)
  const started = await s.logins.startSignup(invitation.token)
  t.equal(started.user, 'alice')
  t.match(started.uri, /^otpauth:\/\/totp\/test-cluster:alice\?secret=[A-Z2-7]+&issuer=test-cluster/)
  await refused(t, s.logins.completeSignup(invitation.token, 'too short', totpCode(started.secret, s.now())), WeakPassword)
  await refused(t, s.logins.completeSignup(invitation.token, PASSWORD, '000000'), SignupRefusal)
  await s.logins.completeSignup(invitation.token, PASSWORD, totpCode(started.secret, s.now()))
  await refused(t, s.logins.startSignup(invitation.token), TokenRefusal, TOKEN_NOT_FOUND, 'a spent invitation is refused')
  await refused(t, s.logins.completeSignup(invitation.token, PASSWORD, totpCode(started.secret, s.now())), TokenRefusal, TOKEN_NOT_FOUND)
  s.advance(TOTP.stepMs)
  t.equal((await s.logins.login('alice', PASSWORD, totpCode(started.secret, s.now()))).user.name, 'alice')

  await s.backend.close()
  const bytes = readdirSync(s.dir)
    .map((f) => readFileSync(join(s.dir, f)).toString('latin1'))
    .join('')
  t.notOk(bytes.includes(PASSWORD), 'the password is nowhere in the database files')
  t.notOk(bytes.includes(invitation.token), 'nor the token')
})

t.test('only the second factor offered last to the same token is enrolled', async (t) => {
  const s = setup(t)
  const { invitation } = await s.invites.addUser('alice', ['root'], ['access'], 3_600_000)
  const first = await s.logins.startSignup(invitation.token)
  const second = await s.logins.startSignup(invitation.token)
  await refused(t, s.logins.completeSignup(invitation.token, PASSWORD, totpCode(first.secret, s.now())), SignupRefusal)
  await s.logins.completeSignup(invitation.token, PASSWORD, totpCode(second.secret, s.now()))
})

t.test('a code logs in once', async (t) => {
  const s = setup(t)
  const secret = await signedUp(s)
  const code = totpCode(secret, s.now())
  await s.logins.login('alice', PASSWORD, code)
  await refused(t, s.logins.login('alice', PASSWORD, code), LoginRefused, undefined, 'the same code again, within its window')
  const both = await Promise.allSettled([0, 1].map(() => s.logins.login('alice', PASSWORD, totpCode(secret, s.now() + TOTP.stepMs))))
  t.same(both.map((r) => r.status).sort(), ['fulfilled', 'rejected'], 'of two logins with one fresh code, one succeeds')
})

t.test('a wrong user name, password or code is one refusal', async (t) => {
  const s = setup(t)
  const secret = await signedUp(s)
  const answers = await Promise.allSettled([
    s.logins.login('mallory', PASSWORD, totpCode(secret, s.now())),
    s.logins.login('alice', 'wrong password!', totpCode(secret, s.now())),
    s.logins.login('alice', PASSWORD, '000000'),
    s.logins.login('../etc', PASSWORD, '000000'),
  ])
  for (const answer of answers)
    t.same(answer.status === 'rejected' && [answer.reason.constructor, answer.reason.message], [LoginRefused, 'wrong user name, password or second factor code'])
})

t.test('five failures in a row lock the user for 30 minutes', async (t) => {
  const s = setup(t)
  const secret = await signedUp(s)
  for (let i = 0; i < LOCKOUT.failures - 1; i++) await refused(t, s.logins.login('alice', 'wrong password!', '000000'), LoginRefused)
  t.same(await s.locks.list(), [], 'four failures lock nothing')
  await s.logins.login('alice', PASSWORD, totpCode(secret, s.now()))
  for (let i = 0; i < LOCKOUT.failures - 1; i++) await refused(t, s.logins.login('alice', PASSWORD, '000000'), LoginRefused)
  t.same(await s.locks.list(), [], 'a success starts the count again')
  await refused(t, s.logins.login('alice', PASSWORD, '000000'), LoginRefused)
  const [lock] = await s.locks.list()
  t.same(lock.target, { user: 'alice', loginsOnly: true }, 'its logins only: whoever tried the password cannot end her sessions')
  t.equal(lock.expires, s.now() + 30 * 60_000)
  t.equal(lock.message, '5 failed logins in a row: locked for 30 minutes')
  s.advance(TOTP.stepMs)
  await refused(
    t,
    s.logins.login('alice', PASSWORD, totpCode(secret, s.now())),
    Locked,
    'logins of user "alice" are locked: 5 failed logins in a row: locked for 30 minutes',
    'who knows the password and a code is told',
  )
  await refused(t, s.logins.login('alice', 'wrong password!', totpCode(secret, s.now())), LoginRefused, undefined, 'a guesser is not')
  await refused(t, s.logins.login('alice', PASSWORD, '000000'), LoginRefused, undefined, 'nor who has the password alone')
})

t.test('logins at once judge no more codes than the lockout allows: a right code sent after five wrong ones is refused', async (t) => {
  const s = setup(t)
  const secret = await signedUp(s)
  // Writes of alice's credentials are held while the gate is shut, so that logins begun at
  // once have all passed the check for a lock before any of them is counted.
  const held: (() => void)[] = []
  let shut = true
  const real = s.backend
  const backend = withTxn(real, async (conditions: Condition[], operations: Operation[]) => {
    if (shut && operations.some((op) => op.key === credentialsKey('alice'))) await new Promise<void>((resolve) => held.push(resolve))
    return real.txn(conditions, operations)
  })
  const until = async (count: number) => {
    while (held.length < count) await new Promise((resolve) => setTimeout(resolve, 5))
  }
  const logins = new Logins({ backend, tokens: s.tokens, users: s.users, locks: s.locks, clusterName: () => 'test-cluster', clock: s.now })
  const wrong = Array.from({ length: 2 * LOCKOUT.failures }, (_, i) =>
    logins.login('alice', PASSWORD, String(i).padStart(6, '0')).then(
      () => 'logged in',
      (error: Error) => error.constructor.name,
    ),
  )
  await until(wrong.length)
  // The right code, begun while the wrong ones are under way: no lock yet.
  const right = logins.login('alice', PASSWORD, totpCode(secret, s.now())).then(
    () => 'logged in',
    (error: Error) => error.constructor.name,
  )
  await until(wrong.length + 1)
  shut = false
  for (const release of held.splice(0, wrong.length)) release()
  t.same(await Promise.all(wrong), Array(wrong.length).fill('LoginRefused'))
  held.splice(0)[0]()
  t.equal(await right, 'LoginRefused', 'the right code, after the five that lock her, is refused')
  t.same(
    (await s.locks.list()).map((lock) => lock.target),
    [{ user: 'alice', loginsOnly: true }],
    'and her logins locked once',
  )
})

t.test('a right password and code whose login cannot complete (its certificates not issued) is no failed login', async (t) => {
  const s = setup(t)
  const secret = await signedUp(s)
  for (let i = 0; i < LOCKOUT.failures + 2; i++) {
    s.advance(TOTP.stepMs)
    const failing = s.logins.login('alice', PASSWORD, totpCode(secret, s.now()), async () => {
      throw new Error('the backend did not answer')
    })
    await t.rejects(failing, { message: 'the backend did not answer' })
  }
  s.advance(TOTP.stepMs)
  t.equal((await s.logins.login('alice', PASSWORD, totpCode(secret, s.now()))).user.name, 'alice', 'she logs in, not locked out')
  t.same(await s.locks.list(), [])
})

t.test('a lockout ends when its lock runs out; an attempt counted and never judged locks as a failure would', async (t) => {
  const s = setup(t)
  const secret = await signedUp(s)
  for (let i = 0; i < LOCKOUT.failures; i++) await refused(t, s.logins.login('alice', PASSWORD, '000000'), LoginRefused)
  t.equal((await s.locks.list()).length, 1)
  s.advance(LOCKOUT.durationMs + TOTP.stepMs)
  await s.logins.login('alice', PASSWORD, totpCode(secret, s.now()))
  t.pass('she logs in once the lock ran out')

  // Four failures, then a fifth attempt counted whose auth server stopped before judging it.
  for (let i = 0; i < LOCKOUT.failures - 1; i++) await refused(t, s.logins.login('alice', PASSWORD, '000000'), LoginRefused)
  const stored = await readCredentials(s.backend, 'alice')
  await s.backend.put(credentialsKey('alice'), JSON.stringify({ ...stored.record, failures: LOCKOUT.failures, attemptAt: s.now() }))
  s.advance(TOTP.stepMs)
  await refused(t, s.logins.login('alice', PASSWORD, totpCode(secret, s.now())), LoginRefused, undefined, 'refused while the fifth may still be judged')
  t.equal((await s.locks.list()).filter((lock) => lock.expires! > s.now()).length, 0, 'unlocked meanwhile')
  s.advance(60_000)
  await refused(t, s.logins.login('alice', PASSWORD, totpCode(secret, s.now())), LoginRefused, undefined, 'and once it never will be, locked')
  t.equal((await s.locks.list()).filter((lock) => lock.expires! > s.now()).length, 1)
})

t.test('a login racing a reset or a removal: its certificates are issued before its write, which then fails, or come under the lock', async (t) => {
  for (const race of ['reset', 'removal'] as const) {
    const s = setup(t)
    const secret = await signedUp(s)
    let issuedAt = 0
    // The reset (or removal) runs whole between the certificate's issue and the login's write.
    const racing = s.logins.login('alice', PASSWORD, totpCode(secret, s.now()), async () => {
      issuedAt = s.now()
      s.advance(400)
      if (race === 'reset') await s.invites.reset('alice', 3_600_000)
      else await s.invites.removeUser('alice')
      return 'certificates'
    })
    await refused(t, racing, LoginRefused, undefined, `${race}: the login's write meets the deletion and fails`)
    const [lock] = await s.locks.list()
    t.ok('user' in lock.target && lock.target.issuedBefore! > issuedAt, `${race}: and had it won, the lock would cover what it issued`)
    t.equal((await s.locks.list()).length, 1, `${race}: one lock`)
  }
})

t.test('reset voids the password and second factor and locks the certificates from before it; rm removes the user, its secrets and invitations, and locks it', async (t) => {
  const s = setup(t)
  const secret = await signedUp(s)
  s.advance(400) // not on a whole second: the reset's instant is the next one
  const resetAt = s.now()
  const first = (await s.users.get('alice'))!.generation
  t.match(first, /^[A-Za-z0-9_-]{16}$/, 'a user is added with a generation')
  const { invitation, lock } = await s.invites.reset('alice', 3_600_000)
  const firstCut = Math.ceil(resetAt / 1000) * 1000
  t.same(
    lock.target,
    { user: 'alice', issuedBefore: firstCut, generation: first },
    'a lock on the certificates issued before the reset, from the next whole second, and on the generation it ended',
  )
  const second = (await s.users.get('alice'))!.generation
  t.not(second, first, 'the user has a new generation')
  t.equal(lock.expires, firstCut + 2 * MAX_USER_CERT_TTL_MS, 'until the last of them has expired, whatever the clock of the auth server that issued it')
  await refused(t, s.logins.login('alice', PASSWORD, totpCode(secret, s.now())), LoginRefused, undefined, 'the old password and factor are void')
  const started = await s.logins.startSignup(invitation.token)
  await s.logins.completeSignup(invitation.token, 'another long password', totpCode(started.secret, s.now()))
  s.advance(TOTP.stepMs)
  t.equal((await s.logins.login('alice', 'another long password', totpCode(started.secret, s.now()))).user.name, 'alice', 'that lock does not bar the logins that follow')
  s.advance(TOTP.stepMs)
  const again = await s.invites.reset('alice', 3_600_000)
  const third = (await s.users.get('alice'))!.generation
  t.equal((await s.tokens.list()).length, 1)
  s.advance(1000)
  await s.invites.removeUser('alice')
  t.same(await s.tokens.list(), [], 'its invitation is gone')
  t.equal(await s.users.get('alice'), undefined)
  t.same(await s.backend.list('/credentials/'), [], 'its secrets are gone')
  t.same(
    (await s.locks.list()).map((l) => [l.target, l.message]),
    [
      [{ user: 'alice', issuedBefore: firstCut, generation: first }, 'the user was reset'],
      [{ user: 'alice', issuedBefore: firstCut + 2 * TOTP.stepMs, generation: second }, 'the user was reset'],
      [{ user: 'alice', issuedBefore: firstCut + 2 * TOTP.stepMs + 1000, generation: third }, 'the user was removed'],
    ],
  )
  await refused(t, s.logins.startSignup(again.invitation.token), TokenRefusal, TOKEN_NOT_FOUND)
})

t.test('a sign-up survives a restart: the password and second factor are in the backend', async (t) => {
  const s = setup(t)
  const secret = await signedUp(s)
  await s.backend.close()
  const backend = SqliteBackend.open(join(s.dir, 'backend.db'))
  t.teardown(() => backend.close())
  const users = new UserDirectory(backend)
  const tokens = new TokenService(backend, [], s.now)
  const locks = new Locks({ backend, nodes: new NodeDirectory(backend, 30_000), users, clock: s.now })
  const logins = new Logins({ backend, tokens, users, locks, clusterName: () => 'test-cluster', clock: s.now })
  t.equal((await logins.login('alice', PASSWORD, totpCode(secret, s.now()))).user.name, 'alice')
})

t.test('a user cannot take a name the audit log gives actors that are not users', async (t) => {
  const s = setup(t)
  for (const name of ['admin', 'automatic', 'unknown']) {
    await refused(
      t,
      s.invites.addUser(name, ['root'], ['access'], 3_600_000),
      UserError,
      `the user name "${name}" is reserved: the audit log names actors that are not users so (the local admin identity, automatic steps)`,
    )
    t.equal(await s.users.get(name), undefined, 'and none is added')
  }
  t.ok(await s.invites.addUser('admins', ['root'], ['access'], 3_600_000), 'a name like them is fine')
})

t.test('a user of an earlier version, without a generation, gets one at its next certificate; a reset before then is judged by dates', async (t) => {
  const s = setup(t)
  const old = { name: 'dave', logins: ['root'], roles: ['access'], created: s.now() }
  await s.backend.put('/users/dave', JSON.stringify(old))
  const reset = await s.invites.reset('dave', 3_600_000)
  t.same(reset.lock.target, { user: 'dave', issuedBefore: Math.ceil(s.now() / 1000) * 1000 }, 'no generation ended: the lock judges by dates alone')
  const given = (await s.users.get('dave'))!.generation
  t.match(given, /^[A-Za-z0-9_-]{16}$/, 'the reset gave it one')
  await s.backend.put('/users/erin', JSON.stringify({ ...old, name: 'erin' }))
  const issued = await s.users.withGeneration((await s.users.get('erin'))!)
  t.match(issued.generation, /^[A-Za-z0-9_-]{16}$/, 'one is given at issue')
  t.equal((await s.users.get('erin'))!.generation, issued.generation, 'and stored, so that a reset or removal ends it')
  t.equal((await s.users.withGeneration(issued)).generation, issued.generation, 'a user with one keeps it')
})

t.test('a reset or a removal during which the clock is set back a day does not wait for the day', async (t) => {
  const s = setup(t)
  await signedUp(s)
  // Each command makes a lock, another, and drops the first: the clock goes back after the
  // last of these, with the lock's instant chosen, before the command waits for it.
  let locksMade = 0
  const invites = new Invites({
    backend: s.backend,
    tokens: s.tokens,
    users: s.users,
    locks: s.locks,
    lockMade: async () => {
      if (++locksMade % 3 === 0) s.advance(-86_400_000)
    },
    clock: s.now,
  })
  const hung = Symbol('hung')
  const bounded = async (promise: Promise<unknown>) => {
    let timer: NodeJS.Timeout | undefined
    const outcome = await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(() => resolve(hung), 10_000)))])
    clearTimeout(timer)
    return outcome
  }
  t.not(await bounded(invites.reset('alice', 3_600_000)), hung, 'the reset returns')
  t.not(await bounded(invites.removeUser('alice')), hung, 'and so does the removal')
  t.equal(locksMade, 6)
  t.equal(await s.users.get('alice'), undefined, 'which removed the user')
})
