// The renewal timer with an injected clock and timers, over real certificates from a real
// CA: renewals at two thirds of each lifetime for several lifetimes, retries with backoff
// and a WARN with the time left, rotations, and waits longer than setTimeout allows.

import { type KeyObject, X509Certificate } from 'node:crypto'
import { Writable } from 'node:stream'
import t from 'tap'
import { Authority, newKeySet } from '../auth/authorities.ts'
import { issueHostIdentity } from '../auth/issuer.ts'
import { issuedByAny } from './cert-subject.ts'
import { generateJoinKeys } from './join.ts'
import { createLogger } from './log.ts'
import { RETRY_BASE_MS, RETRY_CAP_MS, RenewalSchedule, RetryLater, type Timers } from './renewal-schedule.ts'
import { renewalDueAt } from './renewal-window.ts'

const DAY = 24 * 3_600_000
const CLUSTER = 'c1'

/** A clock and timers that move only when told to. */
function fakeTime() {
  let now = Date.UTC(2027, 0, 1)
  let nextId = 0
  const pending = new Map<number, { at: number; callback: () => void }>()
  const timers: Timers = {
    set: (callback, ms) => {
      pending.set(++nextId, { at: now + ms, callback })
      return nextId
    },
    clear: (handle) => void pending.delete(handle as number),
  }
  /** Runs every timer due up to `until`, in order, letting the renewals they start finish. */
  const advanceTo = async (until: number) => {
    for (;;) {
      const [id, next] = [...pending.entries()].sort((a, b) => a[1].at - b[1].at)[0] ?? []
      if (next === undefined || next.at > until) break
      pending.delete(id!)
      now = next.at
      next.callback()
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
    }
    now = until
  }
  return { clock: () => now, timers, advanceTo, pending }
}

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
  return { entries, log: createLogger('test', { format: 'json', stream }) }
}

t.test('three lifetimes: renewed each time two thirds have passed, never expired', async (t) => {
  const time = fakeTime()
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
  t.same(h.state.renewedAt, dues, "each at the start of its certificate's renewal window")
  for (const [i, at] of h.state.renewedAt.entries()) {
    const issued = i === 0 ? start : h.state.renewedAt[i - 1]
    const share = (at - issued) / ttl
    t.ok(share > 0.66 && share < 0.68, `renewal ${i + 1} after ${Math.round(share * 100)}% of its lifetime`)
  }
  t.same(expiredAt, [], 'the certificate never expired')
  t.ok(h.state.cert.validToDate.getTime() > time.clock(), 'and is valid at the end')
})

t.test("a year-long certificate is renewed after 243 days, past setTimeout's longest wait", async (t) => {
  const time = fakeTime()
  const h = host(time.clock, 365 * DAY)
  const schedule = new RenewalSchedule({ what: 'x', certificate: h.certificate, renew: h.renew, log: jsonLog().log, clock: time.clock, timers: time.timers })
  schedule.start()
  const due = renewalDueAt(h.state.cert)
  await time.advanceTo(due - 1)
  t.equal(h.state.renewedAt.length, 0, 'not before its window')
  await time.advanceTo(due)
  t.same(h.state.renewedAt, [due])
})

t.test('failures are retried with growing waits and logged at WARN with the time left', async (t) => {
  const time = fakeTime()
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
    random: () => 0.999,
  })
  schedule.start()
  const due = renewalDueAt(h.state.cert)
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
  const warnings = entries.filter((entry) => entry.level === 'warn')
  t.equal(warnings.length, 12)
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

t.test('retries of a short lifetime come within a tenth of it', async (t) => {
  const time = fakeTime()
  const h = host(time.clock, 15_000)
  const tries: number[] = []
  const schedule = new RenewalSchedule({
    what: 'x',
    certificate: h.certificate,
    renew: () => {
      tries.push(time.clock())
      if (tries.length < 8) throw new Error('down')
      h.renew()
    },
    log: jsonLog().log,
    clock: time.clock,
    timers: time.timers,
    random: () => 0.999,
  })
  const lifetime = h.state.cert.validToDate.getTime() - h.state.cert.validFromDate.getTime()
  schedule.start()
  await time.advanceTo(time.clock() + 30_000)
  const waits = tries.slice(1, 8).map((at, i) => at - tries[i])
  t.ok(
    waits.every((wait) => wait <= lifetime / 10),
    `every wait at most a tenth of ${lifetime} ms (${waits.join(', ')} ms)`,
  )
  t.ok(h.state.renewedAt.length >= 1)
})

t.test('a rotation renews at once, also one that began during a renewal', async (t) => {
  const time = fakeTime()
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
    dueAt: (cert) => (issuedByAny(cert, [signer()]) ? renewalDueAt(cert) : time.clock()),
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
  const time = fakeTime()
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
