// Joining a node to a real auth server process: success, and every kind of refusal.

import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { AuthProcess, startNode, tempDir, waitForNode } from './helpers/cluster.ts'

const auth = new AuthProcess()
t.before(() => auth.start())
t.teardown(() => auth.stop())

async function joinAttempts(): Promise<number> {
  return (await auth.api<{ join_attempts: number }>('GET', '/v1/status')).join_attempts
}

/**
 * Runs a node that must fail to join; returns its standard error. Refused by the cluster it
 * exits 3, which the systemd unit does not restart (RestartPreventExitStatus): only an
 * operator's new token changes that. A pin that does not match is 1, as is any failure.
 */
async function refusedJoin(t: Test, args: string[], exitCode = 3): Promise<string> {
  const dataDir = tempDir()
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, ...args])
  const code = await node.exited
  t.equal(code, exitCode, 'the node exits with the status of its failure')
  t.notOk(existsSync(join(dataDir, 'identity', 'identity.json')), 'no identity is stored')
  return node.stderr
}

t.test('a node joins with a valid token and pin, and shows in nodes ls', async (t) => {
  const token = await auth.token()
  const pin = await auth.pin()
  const dataDir = tempDir()
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, `--token=${token}`, `--ca-pin=${pin}`, '--nodename=pi-ok', '--labels=distro=ubuntu'])
  t.teardown(() => node.stop())
  const listing = await waitForNode(auth, 'pi-ok')
  t.match(listing, /^pi-ok\s+[0-9a-f-]{36}\s+127\.0\.0\.1:\d+\s+distro=ubuntu$/m, 'the address proxies dial it at')
  t.notMatch(node.stderr, /WARN/, 'no warning when a pin is given')
  for (const file of ['host.key', 'ssh_host_ed25519_key', 'host.crt', 'identity.json']) {
    t.equal(statSync(join(dataDir, 'identity', file)).mode & 0o777, 0o600, `${file} is 0600`)
  }
  t.notMatch(node.stderr + auth.daemon.stderr, new RegExp(token), 'the token never appears in logs')
})

t.test('once joined, a name, address or pin that differ from the stored identity are said to be ignored', async (t) => {
  const pin = await auth.pin()
  const dataDir = tempDir()
  const first = startNode([`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-stored'])
  t.teardown(() => first.stop())
  await waitForNode(auth, 'pi-stored')
  await first.stop()
  const again = startNode([`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, `--ca-pin=${pin}`, '--nodename=pi-stored'], { WARREN_LOG_FORMAT: 'json' })
  t.teardown(() => again.stop())
  await again.waitFor('the identity in use', async () => again.logEntries().some((entry) => entry.host_id !== undefined))
  t.same(
    again.logEntries().filter((entry) => entry.ignored_setting !== undefined),
    [],
    'the same settings: nothing said',
  )
  await again.stop()
  const moved = startNode([`--data-dir=${dataDir}`, '--auth-server=127.0.0.1:9', `--ca-pin=sha256:${'0'.repeat(64)}`, '--nodename=pi-renamed'], { WARREN_LOG_FORMAT: 'json' })
  t.teardown(() => moved.stop())
  await moved.waitFor('the settings judged', async () => moved.logEntries().filter((entry) => entry.ignored_setting !== undefined).length === 3)
  t.match(
    moved.logEntries().filter((entry) => entry.ignored_setting !== undefined),
    [
      { level: 'warn', ignored_setting: 'nodename', configured: 'pi-renamed', in_use: 'pi-stored' },
      { level: 'warn', ignored_setting: 'auth_servers', configured: '127.0.0.1:9', in_use: auth.address },
      { level: 'warn', ignored_setting: 'ca_pin', configured: `sha256:${'0'.repeat(64)}`, in_use: pin },
    ],
  )
})

t.test('without a pin the node joins but warns on standard error', async (t) => {
  const token = await auth.token()
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${auth.address}`, `--token=${token}`, '--nodename=pi-nopin'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'pi-nopin')
  t.match(node.stderr, /WARN.*without --ca-pin/)
})

t.test('a wrong pin refuses before the token leaves the device', async (t) => {
  const token = await auth.token()
  const before = await joinAttempts()
  const stderr = await refusedJoin(t, [`--token=${token}`, `--ca-pin=sha256:${'0'.repeat(64)}`, '--nodename=pi-badpin'], 1)
  t.match(stderr, /CA pin mismatch/)
  t.equal(await joinAttempts(), before, 'no join attempt reached the auth server')
})

t.test('refusals: wrong, expired, deleted, wrong-role and used single-use tokens', async (t) => {
  const pin = await auth.pin()
  const pinFlag = `--ca-pin=${pin}`

  t.match(await refusedJoin(t, [`--token=${'f'.repeat(32)}`, pinFlag, '--nodename=pi-wrong']), /join refused for node "pi-wrong" \(role node\): token expired or not found/)

  const short = await auth.token(['nodes', 'add', '--ttl=1s'])
  await sleep(1500)
  t.match(await refusedJoin(t, [`--token=${short}`, pinFlag, '--nodename=pi-expired']), /token expired or not found/)

  const deleted = await auth.token()
  t.equal((await auth.ctl(['tokens', 'rm', deleted])).code, 0)
  t.match(await refusedJoin(t, [`--token=${deleted}`, pinFlag, '--nodename=pi-deleted']), /token expired or not found/)

  const proxyOnly = await auth.token(['tokens', 'add', '--type=proxy'])
  const stderr = await refusedJoin(t, [`--token=${proxyOnly}`, pinFlag, '--nodename=pi-role'])
  t.match(stderr, /join refused for node "pi-role" \(role node\): the token does not allow "node" role/)
  t.notMatch(stderr, new RegExp(proxyOnly), 'the refusal never names the token')

  const once = await auth.token(['nodes', 'add', '--single-use'])
  const first = startNode([`--data-dir=${tempDir()}`, `--auth-server=${auth.address}`, `--token=${once}`, pinFlag, '--nodename=pi-once'])
  t.teardown(() => first.stop())
  await waitForNode(auth, 'pi-once')
  t.match(await refusedJoin(t, [`--token=${once}`, pinFlag, '--nodename=pi-twice']), /token expired or not found/)

  const listing = (await auth.ctl(['nodes', 'ls'])).stdout
  for (const name of ['pi-wrong', 'pi-expired', 'pi-deleted', 'pi-role', 'pi-twice']) {
    t.notMatch(listing, new RegExp(`^${name} `, 'm'), `${name} left no trace`)
  }
})
