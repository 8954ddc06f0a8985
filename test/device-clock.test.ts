// A device whose clock is wrong when it boots (a board without a real-time clock starts in
// 1970, or at a time saved long ago, or far ahead), corrected later by NTP: the node says
// what is wrong (its status and a JSON log field), keeps trying, and comes back by itself
// with its identity once the clock is right, without a restart. The node runs under
// libfaketime (Debian `faketime`), whose time a file sets and the test changes.

import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { WarrenStatus } from '../shared/status.ts'
import { authAndProxy, JSON_LOGS, startNode, tempDir } from './helpers/cluster.ts'
import { fakeTime, LIBFAKETIME } from './helpers/faketime.ts'

t.setTimeout(120_000)

/** The node's clock section (agent/status.ts adds it to the node's status). */
const clockOf = (status: WarrenStatus) => status.node?.clock

const skip = existsSync(LIBFAKETIME) ? false : 'libfaketime is not installed (Debian package faketime)'

for (const { name, boot } of [
  { name: 'in 1970 (no real-time clock)', boot: '@1970-01-02 00:00:00' },
  { name: 'two years ahead', boot: '+730d' },
]) {
  t.test(`a node that boots with its clock ${name} comes back by itself once the clock is set`, { skip }, async (t) => {
    const { auth, pin, proxy } = await authAndProxy(t)
    const nodeDir = tempDir()
    const config = join(tempDir(), 'node.yaml')
    writeFileSync(config, JSON_LOGS)
    const joined = startNode([
      `--config=${config}`,
      `--data-dir=${nodeDir}`,
      `--auth-server=${proxy.web}`,
      `--token=${await auth.token()}`,
      `--ca-pin=${pin}`,
      '--nodename=rtc-less',
    ])
    const before = await joined.waitForStatus('the node to hold a tunnel', (s) => (s.node?.tunnel?.proxies.length ?? 0) === 1)
    await joined.stop()
    const key = readFileSync(join(nodeDir, 'identity', 'host.key'), 'utf8')

    const clockFile = join(tempDir(), 'faketime')
    writeFileSync(clockFile, `${boot}\n`)
    const node = startNode([`--config=${config}`, `--data-dir=${nodeDir}`], fakeTime(clockFile))
    t.teardown(() => node.stop())
    const wrong = await node.waitForStatus('the node to report its clock', (s) => clockOf(s)?.problem != null, 30_000)
    t.equal(wrong.node!.host_id, before.node!.host_id, 'the status names the node it is')
    t.equal(wrong.node!.tunnel?.proxies.length ?? 0, 0, 'no tunnel opens with the clock wrong')
    t.equal(clockOf(wrong)!.problem, boot.startsWith('+') ? 'ahead' : 'behind')
    t.ok(
      node.logEntries().some((entry) => entry.clock === clockOf(wrong)!.problem),
      'a log entry carries the clock field',
    )

    writeFileSync(clockFile, '+0\n')
    const fixed = await node.waitForStatus('a tunnel once the clock is right', (s) => (s.node?.tunnel?.proxies.length ?? 0) === 1, 60_000)
    t.equal(fixed.node!.host_id, before.node!.host_id, 'with the same identity')
    t.equal(clockOf(fixed)?.problem ?? null, null, 'and no clock problem')
    t.equal(readFileSync(join(nodeDir, 'identity', 'host.key'), 'utf8'), key, 'its key is the one it joined with')
    t.ok(node.running, 'the same process')
  })
}
