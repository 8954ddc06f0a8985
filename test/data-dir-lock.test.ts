// One process per data dir, with the real CLI: a second `warren start` on a running node's
// or auth server's data dir exits 1 at once naming the first, which keeps serving; a lock
// left by a SIGKILLed process or naming a PID now used by another process is taken over;
// of two starts on a fresh dir at once, one runs.

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { LOCK_FILE, lockHolder } from '../shared/data-dir-lock.ts'
import { AuthProcess, Daemon, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const lockPid = (dir: string): number | undefined => lockHolder(dir)?.pid

/** Every file under `dir` with its content, to show that a refused start wrote nothing. */
function files(dir: string, skip?: RegExp): Record<string, string> {
  const out: Record<string, string> = {}
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name)
    if (entry.isFile() && !skip?.test(path)) out[path] = readFileSync(path, 'base64')
  }
  return out
}

t.test("a second start on a running auth server's data dir exits 1 naming it; the first keeps serving", async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  // The backend's database changes under a running auth server; everything else must not.
  const before = files(auth.dataDir, /backend\.db/)
  const second = await warren(['start', '--roles=auth', `--config=${auth.configPath}`])
  t.equal(second.code, 1)
  t.match(second.stderr, `data dir ${auth.dataDir} is in use by process ${auth.daemon.child.pid}`)
  t.same(files(auth.dataDir, /backend\.db/), before, "nothing in the data dir changed (the admin identity is the first one's)")
  t.ok(auth.daemon.running)
  t.equal((await auth.ctl(['status'])).code, 0, 'the first auth server still answers')
})

t.test("a second start on a running node's data dir exits 1 naming it and leaves its tunnel alone; after SIGKILL a new one starts", async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const nodeDir = tempDir()
  const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=locked'])
  t.teardown(() => node.stop())
  const hostId = /^locked\s+(\S+)\s+⟵ Tunnel/m.exec(await waitForNode(auth, 'locked'))![1]
  const profile = await signUser(auth, proxy.web)
  const login = `${testLogin()}@locked`
  t.equal((await openssh(profile, [login, 'echo first'])).stdout, 'first\n')
  // The node continued in a fresh image of itself after joining: same PID, and the lock is still its own.
  t.equal(lockPid(nodeDir), node.child.pid)

  const tunnelAtProxy = async () => (await proxy.daemon.status()).proxy!.tunnels.hosts.find((tunnel) => tunnel.host_id === hostId)
  const tunnelBefore = await tunnelAtProxy()
  t.ok(tunnelBefore, "the proxy holds the node's tunnel")
  // The running node writes its audit queue until the auth server has the session's events.
  await node.waitForStatus('the audit events delivered', (status) => status.node?.events?.queued === 0)
  const before = files(nodeDir)
  const second = await warren(['start', '--roles=node', `--data-dir=${nodeDir}`])
  t.equal(second.code, 1)
  t.match(second.stderr, `data dir ${nodeDir} is in use by process ${node.child.pid}`)
  t.same(files(nodeDir), before, 'nothing in the data dir changed')
  t.ok(node.running)
  const ssh = await openssh(profile, [login, 'echo still'])
  t.equal(ssh.stdout, 'still\n', 'the first node still serves SSH through its tunnel', { stderr: ssh.stderr })
  t.same(await tunnelAtProxy(), tunnelBefore, 'the proxy holds the same tunnel: none of this node opened, closed or was replaced')

  await node.stop('SIGKILL')
  t.equal(lockPid(nodeDir), node.child.pid, 'SIGKILL left the lock behind')
  const again = startNode([`--data-dir=${nodeDir}`])
  t.teardown(() => again.stop())
  await again.waitFor('the lock', () => lockPid(nodeDir) === again.child.pid)
  let back = ''
  await until('SSH through the restarted node', async () => (back = (await openssh(profile, [login, 'echo back'])).stdout) === 'back\n')
  t.equal(back, 'back\n', 'the new process took the lock over and serves the node')
})

t.test('a lock naming a live process that is not its holder (a reused PID) is taken over', async (t) => {
  const dataDir = tempDir()
  const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  // This test process is alive, but did not start at clock tick 1.
  writeFileSync(join(dataDir, LOCK_FILE), JSON.stringify({ pid: process.pid, start_time: '1', boot_id: bootId }))
  const auth = new AuthProcess({ dataDir })
  t.teardown(() => auth.stop())
  await auth.start()
  t.equal(lockPid(dataDir), auth.daemon.child.pid, 'the lock names the auth server')
  t.equal((await auth.ctl(['status'])).code, 0, 'which serves')
})

t.test('two starts on a fresh data dir at once: one runs, the other exits 1 naming it', async (t) => {
  const dataDir = join(tempDir(), 'data')
  const config = join(tempDir(), 'warren.yaml')
  writeFileSync(config, `version: v1\ndata_dir: ${dataDir}\nauth_service:\n  listen_addr: 127.0.0.1:0\n  cluster_name: race\n`)
  const racers = [0, 1].map(() => new Daemon(['start', '--roles=auth', `--config=${config}`]))
  t.teardown(() => Promise.all(racers.map((racer) => racer.stop())))
  const loser = await Promise.race(racers.map((racer) => racer.exited.then(() => racer)))
  const winner = racers.find((racer) => racer !== loser)!
  t.equal(loser.child.exitCode, 1)
  t.match(loser.stderr, `data dir ${dataDir} is in use by process ${winner.child.pid}`)
  await winner.waitFor('the admin identity', () => existsSync(join(dataDir, 'admin', 'identity.json')))
  t.ok(winner.running)
  t.equal(lockPid(dataDir), winner.child.pid)
  const status = await warren(['ctl', 'status', `--data-dir=${dataDir}`])
  t.equal(status.code, 0, 'the winner serves', { stderr: status.stderr })
})
