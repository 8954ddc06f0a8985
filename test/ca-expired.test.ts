// An auth server whose CAs' certificates have expired (a cluster left unrotated for more than
// their ten years: here the same data dir started under libfaketime eleven years on) still
// starts. It says the CAs have expired (warrenctl status, the status socket, the metric),
// refuses to sign with them in words that say how to rotate, and warrenctl, whose own
// identity the expired user CA can no longer sign, rotates both; then signing works again,
// and a copy of the identity the stand-in signed is refused from update_servers on.

import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { type AdminIdentityFile, adminIdentityPath } from '../auth/admin-identity.ts'
import { AuthProcess, freePort, ROOT, type RunResult, run, tempDir } from './helpers/cluster.ts'
import { clockOffBy } from './helpers/faketime.ts'

const DAY_MS = 24 * 3600_000
/** Past the CAs' ten years. */
const LATER_DAYS = 4000
const later = clockOffBy(`+${LATER_DAYS}d`)

t.test('an auth server with expired CAs starts, reports them, refuses to sign with them, and warrenctl rotates them', { timeout: 180_000 }, async (t) => {
  const diagAddr = `127.0.0.1:${await freePort()}`
  const first = await new AuthProcess({ diagAddr }).start()
  await first.api('POST', '/v1/users', { name: 'alice', logins: ['root'] })
  await first.stop()

  const auth = new AuthProcess({ dataDir: first.dataDir, diagAddr, env: later })
  await auth.start()
  t.teardown(() => auth.stop())
  // warrenctl on the same host, so by the same clock.
  const ctl = (args: string[]): Promise<RunResult> => run(join(ROOT, 'cli/warrenctl.ts'), [...args, `--data-dir=${auth.dataDir}`], { env: later })
  const now = Date.now() + LATER_DAYS * DAY_MS
  const identity = (): AdminIdentityFile => JSON.parse(readFileSync(adminIdentityPath(auth.dataDir), 'utf8'))
  // A copy of the identity the stand-in signed, taken while the user CA is expired.
  const standInIdentity = identity()

  const status = await ctl(['status'])
  t.equal(status.code, 0, `warrenctl status answers: ${status.stderr}`)
  t.match(status.stdout, /^Host CA\s+never updated, EXPIRED \d\d \w{3} \d\d \d\d:\d\d UTC: it signs nothing until rotated \(warrenctl auth rotate --type=host\)$/m)
  t.match(status.stdout, /^User CA\s+never updated, EXPIRED \d\d \w{3} \d\d \d\d:\d\d UTC: it signs nothing until rotated \(warrenctl auth rotate --type=user\)$/m)
  const own = await auth.daemon.status()
  t.same([own.auth?.host_ca.expired, own.auth?.user_ca.expired], [true, true], 'the status socket says so')
  const metrics = await (await fetch(`http://${diagAddr}/metrics`)).text()
  for (const ca of ['host', 'user']) {
    const value = new RegExp(`^warren_auth_ca_expiry_timestamp_seconds\\{ca="${ca}"\\} (\\S+)$`, 'm').exec(metrics)?.[1]
    t.ok(value !== undefined && Number(value) * 1000 < now, `the ${ca} CA's expiry metric is in the past: ${value}`)
  }

  // What needs no CA is served: tokens, users.
  const tokens = await ctl(['nodes', 'add', '--ttl=5m'])
  t.equal(tokens.code, 0, tokens.stderr)
  t.match((await ctl(['users', 'ls'])).stdout, /^alice\s/m)

  // Signing with the expired user CA is refused, saying how to rotate it; nothing is written.
  const out = join(tempDir(), 'alice')
  const sign = await ctl(['auth', 'sign', '--user=alice', `--out=${out}`])
  t.equal(sign.code, 1)
  t.match(sign.stderr, /^ERROR: the user CA's certificate expired on \S+: it signs nothing any peer accepts; rotate it with "warrenctl auth rotate --type=user"/)
  t.notOk(existsSync(out), 'no credentials written')

  // The rotation the message names: from update_clients the new CAs sign.
  for (const type of ['host', 'user']) {
    for (const phase of ['init', 'update_clients']) {
      const step = await ctl(['auth', 'rotate', `--type=${type}`, '--manual', `--phase=${phase}`])
      t.equal(step.code, 0, `${type} ${phase}: ${step.stderr}`)
      t.equal(step.stdout, `The ${type} CA is now in phase ${phase}.\n`)
    }
  }
  const rotating = await ctl(['status'])
  t.equal(rotating.code, 0, rotating.stderr)
  t.notMatch(rotating.stdout, /EXPIRED/, `the signing CAs are new:\n${rotating.stdout}`)
  t.match(rotating.stdout, /^User CA\s+rotation in progress: phase update_clients \(manual\), since .*, expires /m)
  const signed = await ctl(['auth', 'sign', '--user=alice', `--out=${out}`])
  t.equal(signed.code, 0, `the new user CA signs: ${signed.stderr}`)

  // The copy, trusting the server's certificate as the identity file does now.
  const copy = join(tempDir(), 'identity.json')
  const withCopy = (): Promise<RunResult> => {
    writeFileSync(copy, JSON.stringify({ ...identity(), cert: standInIdentity.cert, key: standInIdentity.key }))
    return run(join(ROOT, 'cli/warrenctl.ts'), ['status', `--identity=${copy}`], { env: later })
  }
  t.equal((await withCopy()).code, 0, 'update_clients: the stand-in is still trusted')
  for (const phase of ['update_servers', 'standby']) {
    for (const type of ['host', 'user']) {
      const step = await ctl(['auth', 'rotate', `--type=${type}`, '--manual', `--phase=${phase}`])
      t.equal(step.code, 0, `${type} ${phase}: ${step.stderr}`)
    }
    const refused = await withCopy()
    t.equal(refused.code, 1, `${phase}: the identity the stand-in signed is refused, with days left`)
    t.match(refused.stderr, /needs a valid admin certificate/)
  }
  const done = await ctl(['status'])
  t.match(done.stdout, /^Host CA\s+rotated .*, expires /m)
  t.match(done.stdout, /^User CA\s+rotated .*, expires /m)
  const after = await auth.daemon.status()
  t.same([after.auth?.host_ca.expired, after.auth?.user_ca.expired], [false, false])
  t.equal((await ctl(['auth', 'sign', '--user=alice', `--out=${out}`])).code, 0, 'and after the rotation ends')
})
