// The auth server's own certificates (its TLS certificate, warrenctl's identity) when its
// clock is set, with a fake clock and timers: a step forward past their end, or back to
// before their start, has both issued again at once; a step that leaves them valid does not.

import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import { createLogger } from '../shared/log.ts'
import { fakeTimers } from '../test/helpers/fake-timers.ts'
import { adminIdentityPath } from './admin-identity.ts'
import { Authority, newKeySet } from './authorities.ts'
import { OwnCredentials, type TlsOptions } from './own-credentials.ts'

const DAY = 86_400_000
const CLUSTER = 'c1'

/** Credentials issued as the server issues them at start, with 30-day and 7-day lifetimes. */
function credentials(t: Test) {
  // The CAs are dated by the real clock: the fake one starts there.
  const time = fakeTimers(Date.now())
  const hostCA = new Authority({ type: 'host', clusterName: CLUSTER, keySets: [newKeySet('host', CLUSTER)] })
  const userCA = new Authority({ type: 'user', clusterName: CLUSTER, keySets: [newKeySet('user', CLUSTER)] })
  const dataDir = t.testdir()
  const applied: TlsOptions[] = []
  const own = new OwnCredentials({
    hostCA: () => hostCA,
    userCA: () => userCA,
    clusterName: CLUSTER,
    serverNames: ['127.0.0.1'],
    hostCertTtlMs: 30 * DAY,
    adminCertTtlMs: 7 * DAY,
    dataDir,
    address: () => '127.0.0.1:3025',
    apply: (options) => applied.push(options),
    log: createLogger('test', { level: 'error' }),
    schedule: { clock: time.clock, timers: time.timers, random: () => 0.5 },
  })
  own.tlsOptions()
  own.writeAdminIdentity()
  own.start()
  t.teardown(() => own.stop())
  const admin = () => new X509Certificate(JSON.parse(readFileSync(adminIdentityPath(dataDir), 'utf8')).cert)
  return { time, own, applied, admin }
}

t.test("a step forward past warrenctl's identity has it written again at once, and the TLS certificate when past its end", async (t) => {
  const { time, own, applied, admin } = credentials(t)
  const first = admin().fingerprint256
  time.step(DAY)
  own.clockStepped(DAY)
  await time.advanceTo(time.clock() + 1000)
  t.equal(admin().fingerprint256, first, 'a step of a day leaves both as they were')
  t.equal(applied.length, 0)
  time.step(7 * DAY)
  await time.advanceTo(time.clock() + 60_000)
  t.equal(admin().fingerprint256, first, 'past its end, a timer armed by the old clock would wait on')
  own.clockStepped(7 * DAY)
  await time.advanceTo(time.clock())
  t.not(admin().fingerprint256, first, 'told of the step, the auth server writes it again')
  t.equal(applied.length, 0, 'its TLS certificate, 8 of 30 days old, is not due')
  time.step(23 * DAY)
  own.clockStepped(23 * DAY)
  await time.advanceTo(time.clock())
  t.equal(applied.length, 1, 'past its end, it is issued again too')
})

t.test('a step back to before their start has both issued again: they were issued while the clock ran ahead', async (t) => {
  const { time, own, applied, admin } = credentials(t)
  const first = admin().fingerprint256
  time.step(-DAY)
  await time.advanceTo(time.clock() + 1000)
  t.equal(applied.length, 0, 'until told of the step, nothing happens')
  own.clockStepped(-DAY)
  await time.advanceTo(time.clock())
  t.equal(applied.length, 1, 'the TLS certificate is issued again')
  t.not(admin().fingerprint256, first, "and warrenctl's identity written again")
})
