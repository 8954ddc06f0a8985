// The renewal timer with an injected clock and timers, over real certificates from a real
// CA: renewals at two thirds of each lifetime for several lifetimes, retries with backoff
// and a WARN with the time left, rotations, and waits longer than setTimeout allows.

import { type KeyObject, X509Certificate } from 'node:crypto'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { Authority, newKeySet } from '../auth/authorities.ts'
import { issueHostIdentity } from '../auth/issuer.ts'
import { fakeTimers } from '../test/helpers/fake-timers.ts'
import { issuedByAny } from './cert-subject.ts'
import { generateJoinKeys } from './join.ts'
import { createLogger } from './log.ts'
import { NUDGE_GAP_MS, RENEWAL_SPREAD_SHARE, RETRY_BASE_MS, RETRY_CAP_MS, RenewalSchedule, RetryLater } from './renewal-schedule.ts'
import { renewalDueAt } from './renewal-window.ts'

const DAY = 24 * 3_600_000
const CLUSTER = 'c1'

/** A host with a certificate from a real host CA, renewed by issuing another at the fake now. */
function host(clock: () => number, ttlMs: number) {
  let ca = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  const keys = generateJoinKeys()
  const issue = (tlsPublicKey: KeyObject = keys.tls.publicKey) =>
    new X509Certificate(
      issueHostIdentity(ca, { hostId: 'h', nodename: 'n', clusterName: CLUSTER, roles: ['node'], tlsPublicKey, sshPublicKey: keys.ssh.publicKey, ttlMs, nowMs: clock() })
        .tlsCertPem,
    )
  const state = { cert: issue(), renewedAt: [] as number[] }
  return {
    state,
    certificate: () => state.cert,
    renew: () => {
      state.renewedAt.push(clock())
      state.cert = issue()
    },
    rotate: () => {
      ca = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
    },
    signing: () => ca.tlsCertPems[0],
  }
}

function jsonLog() {
  const entries: Record<string, unknown>[] = []
  const stream = new Writable({
    write: (chunk, _enc, done) => {
      entries.push(JSON.parse(String(chunk)))
      done()
    },
  })
  return { entries, log: createLogger('test', { format: 'json', level: 'debug', stream }) }
}

t.test('three lifetimes: renewed each time two thirds have passed, and a random share more, never expired', async (t) => {
  const time = fakeTimers()
  const ttl = 30 * DAY
  const h = host(time.clock, ttl)
  const start = time.clock()
  const expiredAt: number[] = []
  const dues: number[] = []
  const schedule = new RenewalSchedule({
    what: 'the test certificate',
    certificate: h.certificate,
    renew: () => {
      if (time.clock() > h.state.cert.validToDate.getTime()) expiredAt.push(time.clock())
      dues.push(renewalDueAt(h.state.cert))
      h.renew()
    },
    log: jsonLog().log,
    clock: time.clock,
    timers: time.timers,
  })
  schedule.start()
  await time.advanceTo(start + 3 * ttl)
  t.equal(h.state.renewedAt.length, 4, 'every 20 days over 90 days')
  t.ok(
    h.state.renewedAt.every((at, i) => at >= dues[i] && at <= dues[i] + ttl * RENEWAL_SPREAD_SHARE),
    "each in its certificate's renewal window, at most a twentieth of the lifetime after it opened",
  )
  for (const [i, at] of h.state.renewedAt.entries()) {
    const issued = i === 0 ? start : h.state.renewedAt[i - 1]
    const share = (at - issued) / ttl
    t.ok(share > 0.66 && share < 0.72, `renewal ${i + 1} after ${Math.round(share * 100)}% of its lifetime`)
  }
  t.equal(new Set(h.state.renewedAt.map((at, i) => at - dues[i])).size, 4, 'each at its own random share of the lifetime after the window opened')
  t.same(expiredAt, [], 'the certificate never expired')
  t.ok(h.state.cert.validToDate.getTime() > time.clock(), 'and is valid at the end')
})

t.test("a year-long certificate is renewed after 243 days, past setTimeout's longest wait", async (t) => {
  const time = fakeTimers()
  const h = host(time.clock, 365 * DAY)
  // No spread: the renewal comes as the window opens.
  const schedule = new RenewalSchedule({ what: 'x', certificate: h.certificate, renew: h.renew, log: jsonLog().log, clock: time.clock, timers: time.timers, random: () => 0 })
  schedule.start()
  const due = renewalDueAt(h.state.cert)
  await time.advanceTo(due - 1)
  t.equal(h.state.renewedAt.length, 0, 'not before its window')
  await time.advanceTo(due)
  t.same(h.state.renewedAt, [due])
})

t.test('failures are retried with growing waits and logged at WARN with the time left', async (t) => {
  const time = fakeTimers()
  const h = host(time.clock, 30 * DAY)
  const { entries, log } = jsonLog()
  let failures = 12
  const tries: number[] = []
  const schedule = new RenewalSchedule({
    what: 'the test certificate',
    certificate: h.certificate,
    renew: () => {
      tries.push(time.clock())
      if (failures-- > 0) throw new Error('the auth server cannot be reached')
      h.renew()
    },
    log,
    clock: time.clock,
    timers: time.timers,
    // No spread of the renewal (the first draw), then the longest waits between retries.
    random: (
      (draws = 0) =>
      () =>
        draws++ === 0 ? 0 : 0.999
    )(),
  })
  schedule.start()
  const due = schedule.state.nextAt
  await time.advanceTo(due + DAY)
  t.equal(tries.length, 13, 'twelve failures, then the renewal')
  t.equal(schedule.renewals, 1)
  const waits = tries.slice(1).map((at, i) => at - tries[i])
  t.ok(waits[0] < RETRY_BASE_MS, 'the first retry within a second')
  t.ok(
    waits.every((wait, i) => i === 0 || wait >= waits[i - 1] || wait >= RETRY_CAP_MS - RETRY_CAP_MS / 100),
    'each wait at least as long as the one before, up to the cap',
  )
  t.ok(Math.max(...waits) <= RETRY_CAP_MS, 'never longer than the cap')
  const failed = entries.filter((entry) => entry.renewal_failures !== undefined && entry.level !== 'info')
  t.same(
    failed.map((entry) => entry.renewal_failures),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    'each failure logged once, with how many there were in a row',
  )
  t.same(
    failed.map((entry) => entry.retry_in_ms),
    waits.slice(0, 12),
    'with the wait that followed',
  )
  const warnings = entries.filter((entry) => entry.level === 'warn')
  t.ok(warnings.length < 12, `the same error repeated is not a WARN each time (${warnings.length})`)
  t.match(
    entries.find((entry) => entry.level === 'info'),
    { renewal_failures: 12 },
    'the success says how many failures it ended',
  )
  const left = h.state.cert.validToDate.getTime()
  t.match(warnings[0], {
    what: 'the test certificate',
    error: 'the auth server cannot be reached',
    cert_expires: String,
    time_left: String,
    retry_in: String,
  })
  t.not(new Date(warnings[0].cert_expires as string).getTime(), left, 'the expiry of the certificate that was failing, not of the new one')
  t.match(warnings[0].time_left, /^240h0m20s$/, 'a third of 30 days and the minute it starts early: left when the window opened')
})

t.test('retries of a short lifetime come within a tenth of it while it is valid', async (t) => {
  const time = fakeTimers()
  const h = host(time.clock, 15_000)
  const tries: number[] = []
  const schedule = new RenewalSchedule({
    what: 'x',
    certificate: h.certificate,
    renew: () => {
      tries.push(time.clock())
      if (tries.length < 10) throw new Error('down')
      h.renew()
    },
    log: jsonLog().log,
    clock: time.clock,
    timers: time.timers,
    random: () => 0.999,
  })
  const lifetime = h.state.cert.validToDate.getTime() - h.state.cert.validFromDate.getTime()
  const expires = h.state.cert.validToDate.getTime()
  schedule.start()
  await time.advanceTo(time.clock() + 3_600_000)
  const waits = tries.slice(1, 10).map((at, i) => ({ at: tries[i]!, wait: at - tries[i]! }))
  const whileValid = waits.filter(({ at }) => at < expires).map(({ wait }) => wait)
  t.ok(whileValid.length >= 3, `several tries before it expired (${whileValid.length})`)
  t.ok(
    whileValid.every((wait) => wait <= lifetime / 10),
    `every wait at most a tenth of ${lifetime} ms (${whileValid.join(', ')} ms)`,
  )
  t.ok(
    waits.some(({ at, wait }) => at >= expires && wait > lifetime),
    'once expired, nothing is left to share out: the waits grow past the lifetime',
  )
  t.ok(h.state.renewedAt.length >= 1, 'and the renewal came')
})

t.test('a rotation renews at once, also one that began during a renewal', async (t) => {
  const time = fakeTimers()
  const h = host(time.clock, 30 * DAY)
  const signer = () => h.signing()
  let rotateDuring = false
  const schedule = new RenewalSchedule({
    what: 'x',
    certificate: h.certificate,
    renew: () => {
      h.renew()
      // The answer is from the CA that signed until now; the rotation is heard meanwhile.
      if (rotateDuring) {
        rotateDuring = false
        h.rotate()
        schedule.renewNow()
      }
    },
    dueNow: (cert) => !issuedByAny(cert, [signer()]),
    log: jsonLog().log,
    clock: time.clock,
    timers: time.timers,
  })
  schedule.start()
  await time.advanceTo(time.clock() + DAY)
  t.equal(h.state.renewedAt.length, 0)
  h.rotate()
  schedule.renewNow()
  await time.advanceTo(time.clock() + 1)
  t.equal(h.state.renewedAt.length, 1, 'renewed at once')
  t.ok(issuedByAny(h.state.cert, [signer()]), 'from the new CA')

  rotateDuring = true
  schedule.renewNow()
  await time.advanceTo(time.clock() + 60_000)
  t.equal(h.state.renewedAt.length, 3, 'the renewal made during the rotation is followed by another')
  t.ok(issuedByAny(h.state.cert, [signer()]), 'which is from the CA that signs now')
})

t.test('a refusal that names a later time waits for it', async (t) => {
  const time = fakeTimers()
  const h = host(time.clock, 15_000)
  const tries: number[] = []
  const schedule = new RenewalSchedule({
    what: 'x',
    certificate: h.certificate,
    renew: () => {
      tries.push(time.clock())
      throw new RetryLater('past the recovery window', 3_600_000)
    },
    log: jsonLog().log,
    clock: time.clock,
    timers: time.timers,
  })
  schedule.start()
  await time.advanceTo(time.clock() + 3 * 3_600_000)
  t.same(
    tries.slice(1).map((at, i) => at - tries[i]),
    [3_600_000, 3_600_000, 3_600_000].slice(0, tries.length - 1),
  )
  schedule.stop()
  t.equal(time.pending.size, 0, 'stop clears the timer')
})

/** A schedule for a 15-second certificate that expired an hour ago, whose every try fails as a TLS handshake with an untrusted server does. */
async function expiredAndFailing(t: Test, random = () => 0.999) {
  const time = fakeTimers()
  const h = host(time.clock, 15_000)
  await time.advanceTo(time.clock() + 3_600_000)
  const { entries, log } = jsonLog()
  const tries: number[] = []
  let failWith: Error | undefined = new Error('self-signed certificate in certificate chain')
  let during: (() => void) | undefined
  const schedule = new RenewalSchedule({
    what: "this node's certificates",
    certificate: h.certificate,
    renew: () => {
      tries.push(time.clock())
      during?.()
      if (failWith) throw failWith
      h.renew()
    },
    log,
    clock: time.clock,
    timers: time.timers,
    random,
  })
  t.teardown(() => schedule.stop())
  schedule.start()
  return {
    time,
    h,
    entries,
    tries,
    schedule,
    waits: () => tries.slice(1).map((at, i) => at - tries[i]!),
    failWith: (error: Error | undefined) => void (failWith = error),
    during: (callback: (() => void) | undefined) => void (during = callback),
  }
}

t.test('a certificate that can no longer be used backs off up to the cap, with full jitter', async (t) => {
  const s = await expiredAndFailing(t)
  const start = s.time.clock()
  await s.time.advanceTo(start + 3_600_000)
  const waits = s.waits()
  t.ok(s.tries.length <= 25, `an hour of failures is at most 25 tries (${s.tries.length}), not one every second or two`)
  t.ok(waits[0]! < RETRY_BASE_MS, 'the first retry within a second')
  const ceiling = (i: number) => Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** i)
  const off = waits.flatMap((wait, i) => (wait > ceiling(i) || wait < ceiling(i) * 0.99 ? [`wait ${i + 1}: ${wait} ms, not just under ${ceiling(i)} ms`] : []))
  t.same(off.slice(0, 3), [], 'each wait twice as long as the one before, up to the cap')
  t.ok(
    waits.slice(-3).every((wait) => wait >= RETRY_CAP_MS * 0.99 && wait <= RETRY_CAP_MS),
    'the last waits at the cap',
  )

  // Full jitter: a random share of the same ceilings.
  const low = await expiredAndFailing(t, () => 0.25)
  await low.time.advanceTo(low.time.clock() + 3_600_000)
  const lowOff = low.waits().flatMap((wait, i) => (wait === Math.floor(ceiling(i) * 0.25) ? [] : [`wait ${i + 1}: ${wait} ms, not a quarter of ${ceiling(i)} ms`]))
  t.same(lowOff.slice(0, 3), [], 'a random share of the same ceilings')
})

t.test('a repeated failure is a WARN when it starts, when its error changes and once a minute at most', async (t) => {
  const s = await expiredAndFailing(t)
  const start = s.time.clock()
  await s.time.advanceTo(start + 130_000)
  s.failWith(new Error('connect ECONNREFUSED 127.0.0.1:3025'))
  await s.time.advanceTo(start + 3_600_000)
  const failed = s.entries.filter((entry) => entry.renewal_failures !== undefined)
  t.equal(failed.length, s.tries.length, 'every failure is logged once')
  t.same(
    failed.map((entry) => entry.renewal_failures),
    s.tries.map((_, i) => i + 1),
    'with how many failures there were in a row',
  )
  t.same(
    failed.slice(0, -1).map((entry) => entry.retry_in_ms),
    s.waits(),
    'and the wait that followed, in ms',
  )
  t.match(failed[0], {
    level: 'warn',
    what: "this node's certificates",
    error: 'self-signed certificate in certificate chain',
    retry_in: String,
    cert_expires: String,
    time_left: /^-/,
  })
  const warned = failed.flatMap((entry, i) => (entry.level === 'warn' ? [{ entry, at: s.tries[i]! }] : []))
  const debugs = failed.filter((entry) => entry.level === 'debug')
  t.ok(debugs.length >= 5, `the failures of the first minute after the first are DEBUG (${debugs.length})`)
  for (const [i, { entry, at }] of warned.entries()) {
    if (i === 0) continue
    const before = warned[i - 1]!
    if (entry.error === before.entry.error && at - before.at < 60_000) t.fail(`WARN ${i + 1} ${at - before.at} ms after the one before`)
  }
  const changed = warned.find(({ entry }) => entry.error === 'connect ECONNREFUSED 127.0.0.1:3025')
  t.ok(changed, 'a new error is a WARN')
  t.equal(changed?.entry.failures_not_logged, undefined, 'of its own')
  const repeats = warned.filter(({ entry }) => entry.failures_not_logged !== undefined)
  t.ok(repeats.length > 0, 'a repeat says how many failures since the last WARN were not')
  t.equal(warned.length + debugs.length, failed.length, 'every failure is either')
  const notLogged = warned.reduce((sum, { entry }) => sum + ((entry.failures_not_logged as number | undefined) ?? 0), 0)
  t.ok(notLogged <= debugs.length && notLogged >= debugs.length - 20, 'and the counts add up to the DEBUG lines between')
})

t.test('a success starts the backoff over', async (t) => {
  const s = await expiredAndFailing(t)
  const start = s.time.clock()
  await s.time.advanceTo(start + 1_200_000)
  const before = s.tries.length
  t.ok(s.waits().at(-1)! >= RETRY_CAP_MS * 0.99, 'failing at the cap')
  s.failWith(undefined)
  await s.time.advanceTo(s.schedule.state.nextAt)
  t.equal(s.h.state.renewedAt.length, 1, 'renewed')
  t.equal(s.schedule.state.failures, 0, 'no failures in a row any more')
  t.equal(s.schedule.state.lastError, undefined)
  s.failWith(new Error('down'))
  await s.time.advanceTo(s.time.clock() + 14_000)
  const after = s.tries.slice(before + 1)
  t.ok(after.length >= 3, `the next failures are retried from the start (${after.length} tries in 14 s)`)
  t.ok(after[1]! - after[0]! < RETRY_BASE_MS, 'the first within a second again')
  t.match(s.entries.filter((entry) => entry.level === 'warn').at(-1), { error: 'down', renewal_failures: 1 }, 'and logged as the first')
})

t.test('a nudge cuts a long wait short, no sooner than a second after the last try, and the backoff stands', async (t) => {
  const s = await expiredAndFailing(t)
  await s.time.advanceTo(s.time.clock() + 1_200_000)
  const failures = s.tries.length
  const last = s.tries.at(-1)!
  t.ok(s.schedule.state.nextAt - s.time.clock() > 60_000, 'the next try is minutes away')

  s.schedule.renewNow()
  await s.time.advanceTo(s.time.clock() + NUDGE_GAP_MS)
  t.equal(s.tries.length, failures + 1, 'a nudge: tried at once')
  t.ok(s.tries.at(-1)! - last >= NUDGE_GAP_MS, 'and not sooner than a second after the last try')
  t.ok(s.schedule.state.nextAt - s.time.clock() >= RETRY_CAP_MS * 0.98, 'failed again: the wait that follows is at the cap, not a second')

  // Nudged at once after a try: not before a second has passed.
  s.schedule.renewNow()
  await s.time.advanceTo(s.tries.at(-1)! + NUDGE_GAP_MS - 1)
  t.equal(s.tries.length, failures + 1, 'no try within a second of the last')
  await s.time.advanceTo(s.tries.at(-1)! + NUDGE_GAP_MS)
  t.equal(s.tries.length, failures + 2, 'then one')

  // Nudged during a try that then fails: it comes again within a second, once.
  s.during(() => s.schedule.renewNow())
  s.schedule.renewNow()
  await s.time.advanceTo(s.time.clock() + 1000)
  s.during(undefined)
  await s.time.advanceTo(s.time.clock() + 1000)
  t.equal(s.tries.length, failures + 4, 'a nudge heard during a failing try brings one more try, a second later')
  await s.time.advanceTo(s.time.clock() + 60_000)
  t.equal(s.tries.length, failures + 4, 'and then the backoff again')

  // Nudged into a success: the backoff starts over.
  s.failWith(undefined)
  s.schedule.renewNow()
  await s.time.advanceTo(s.time.clock() + NUDGE_GAP_MS)
  t.equal(s.h.state.renewedAt.length, 1, 'a nudge that succeeds renews')
})

t.test('a nudge does not cut short a wait the failure named', async (t) => {
  const time = fakeTimers()
  const h = host(time.clock, 15_000)
  await time.advanceTo(time.clock() + 60_000)
  const tries: number[] = []
  const schedule = new RenewalSchedule({
    what: 'x',
    certificate: h.certificate,
    renew: () => {
      tries.push(time.clock())
      throw new RetryLater('past the recovery window', 3_600_000)
    },
    log: jsonLog().log,
    clock: time.clock,
    timers: time.timers,
  })
  t.teardown(() => schedule.stop())
  schedule.start()
  await time.advanceTo(time.clock() + 1)
  schedule.renewNow()
  await time.advanceTo(time.clock() + 60_000)
  t.equal(tries.length, 1)
})

t.test('a step of the wall clock past the renewal window renews at once, and past the end too', async (t) => {
  const time = fakeTimers()
  const h = host(time.clock, 30 * DAY)
  const schedule = new RenewalSchedule({ what: 'x', certificate: h.certificate, renew: h.renew, log: jsonLog().log, clock: time.clock, timers: time.timers })
  schedule.start()
  time.step(8 * DAY)
  await time.advanceTo(time.clock() + 60_000)
  t.same(h.state.renewedAt, [], 'a step short of the window changes nothing')
  schedule.clockStepped(8 * DAY)
  await time.advanceTo(time.clock() + 60_000)
  t.same(h.state.renewedAt, [], 'nor once the schedule is told of it')
  time.step(23 * DAY)
  await time.advanceTo(time.clock() + 60_000)
  t.same(h.state.renewedAt, [], 'a timer armed by the old clock would wait on past the end')
  const stepped = time.clock()
  schedule.clockStepped(23 * DAY)
  await time.advanceTo(stepped + 60_000)
  t.same(h.state.renewedAt, [stepped], 'told of the step, it renews at once')
  t.ok(h.state.cert.validToDate.getTime() > time.clock(), 'and the certificate is valid by the clock as it reads now')
  schedule.stop()
})

t.test('a step back neither renews early nor holds back a retry for the size of the step', async (t) => {
  const time = fakeTimers()
  const h = host(time.clock, 30 * DAY)
  let failures = 1
  const schedule = new RenewalSchedule({
    what: 'x',
    certificate: h.certificate,
    renew: () => {
      if (failures-- > 0) throw new Error('the auth server cannot be reached')
      h.renew()
    },
    log: jsonLog().log,
    clock: time.clock,
    timers: time.timers,
  })
  schedule.start()
  const due = schedule.state.nextAt
  await time.advanceTo(due)
  t.equal(schedule.state.failures, 1, 'the first try failed')
  const retryIn = schedule.state.nextAt - time.clock()
  time.step(-5 * DAY)
  schedule.clockStepped(-5 * DAY)
  t.equal(schedule.state.nextAt - time.clock(), retryIn, 'the retry keeps what was left of its wait')
  await time.advanceTo(time.clock() + retryIn)
  t.same(h.state.renewedAt, [due - 5 * DAY + retryIn], 'and comes then, not five days later')

  // A step back before the window: the renewal still comes at the window, by the clock as it reads now.
  const next = schedule.state.nextAt
  time.step(-DAY)
  schedule.clockStepped(-DAY)
  await time.advanceTo(next - 1)
  t.equal(h.state.renewedAt.length, 1, 'not before the window')
  await time.advanceTo(next)
  t.equal(h.state.renewedAt.length, 2, 'at the window')
  schedule.stop()
})

t.test('a renewal asked for within a spread comes at a random point of it, and a later ask does not put it off', async (t) => {
  const time = fakeTimers()
  const h = host(time.clock, 30 * DAY)
  const schedule = new RenewalSchedule({ what: 'x', certificate: h.certificate, renew: h.renew, log: jsonLog().log, clock: time.clock, timers: time.timers, random: () => 0.5 })
  schedule.start()
  await time.advanceTo(time.clock() + DAY)
  const asked = time.clock()
  schedule.renewNow(60_000)
  t.equal(schedule.state.nextAt, asked + 30_000, 'half way into the spread, by the random draw')
  await time.advanceTo(asked + 10_000)
  schedule.renewNow(300_000)
  t.equal(schedule.state.nextAt, asked + 30_000, 'another proxy telling of the same change later does not put it off')
  await time.advanceTo(asked + 29_999)
  t.same(h.state.renewedAt, [], 'not before')
  await time.advanceTo(asked + 30_000)
  t.same(h.state.renewedAt, [asked + 30_000], 'then')
  schedule.renewNow()
  await time.advanceTo(time.clock())
  t.equal(h.state.renewedAt.length, 2, 'without a spread, at once')
  schedule.stop()
})

t.test("a renewal drawn within one proxy's spread is not brought forward by another proxy's draw", async (t) => {
  const time = fakeTimers()
  const h = host(time.clock, 30 * DAY)
  // The first draw is the certificate's own spread in its window.
  const draws = [0.5, 0.9, 0.1]
  const schedule = new RenewalSchedule({
    what: 'x',
    certificate: h.certificate,
    renew: h.renew,
    log: jsonLog().log,
    clock: time.clock,
    timers: time.timers,
    random: () => draws.shift() ?? 0.5,
  })
  schedule.start()
  await time.advanceTo(time.clock() + DAY)
  const asked = time.clock()
  schedule.renewNow(100_000)
  t.equal(schedule.state.nextAt, asked + 90_000, 'the first draw')
  schedule.renewNow(100_000)
  t.equal(schedule.state.nextAt, asked + 90_000, 'kept: a node holding tunnels to many proxies renews at one draw, not the soonest of many')
  schedule.renewNow()
  t.equal(schedule.state.nextAt, asked, 'an ask without a spread still comes at once')
  schedule.stop()
})
