// The auth server's disk is lost: its backend held both CAs, and without them every device
// would have to join again. `warrenctl backup` copied it while the auth server ran;
// `warrenctl restore` puts the copy back once it is stopped, and the cluster carries on: the
// same CA pin, the node behind its tunnel listed again, and a user's certificate from before
// reaching it over OpenSSH. What changed after the copy (a token made since) is gone with
// the restore, as its output says. Real processes and real OpenSSH.

import { existsSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { AuthProcess, freePort, openssh, ProxyProcess, ROOT, run, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'

t.test('a backup made while the auth server runs brings the cluster back after its backend is lost', async (t) => {
  const port = await freePort()
  const auth = await new AuthProcess({ port }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=kept'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'kept')
  const user = await signUser(auth, proxy.web, 'alice', 'access')

  const backup = join(tempDir(), 'warren.db')
  const made = await auth.ctl(['backup', backup])
  t.equal(made.code, 0, `backed up while the auth server runs ${made.stderr.trim()}`)
  t.equal(statSync(backup).mode & 0o777, 0o600, "the copy holds the CAs' keys: its owner's alone")
  t.not((await auth.ctl(['backup', backup])).code, 0, 'an existing file is never overwritten')

  const tokenIds = async (of: AuthProcess) => (JSON.parse((await of.ctl(['tokens', 'ls', '--format=json'])).stdout) as { id: string }[]).map((token) => token.id)
  const before = await tokenIds(auth)
  await auth.token(['tokens', 'add', '--type=node', '--ttl=1h'])
  const [later] = (await tokenIds(auth)).filter((id) => !before.includes(id))
  t.ok(later, 'a token made after the backup')
  const refused = await auth.ctl(['restore', backup])
  t.not(refused.code, 0, 'no restore while the auth server runs')
  t.ok((await tokenIds(auth)).includes(later), 'and the running backend is untouched')

  await auth.stop()
  const backend = join(auth.dataDir, 'backend.db')
  for (const suffix of ['', '-wal', '-shm']) rmSync(backend + suffix, { force: true })
  const restored = await auth.ctl(['restore', backup])
  t.equal(restored.code, 0, `restored onto the lost backend ${restored.stderr.trim()}`)
  t.equal(statSync(backend).mode & 0o777, 0o600)
  t.notOk(existsSync(`${backend}.restoring`) || existsSync(join(auth.dataDir, '.backend.db.restoring')), 'nothing left half way')

  const back = await new AuthProcess({ port, dataDir: auth.dataDir }).start()
  t.teardown(() => back.stop())
  t.equal(await back.pin(), pin, 'the same CAs: the pin every device holds is unchanged')
  await waitForNode(back, 'kept')
  t.pass('the node behind its tunnel is listed again')
  const reached = await openssh(user, [`${testLogin()}@kept`, 'echo reached'])
  t.equal(reached.stdout, 'reached\n', `a certificate from before the backup reaches it (${reached.stderr.trim()})`)
  const after = await tokenIds(back)
  t.same(after.sort(), [...before].sort(), 'the tokens are those of the backup: one made after it is gone with the restore')
})

t.test("with etcd, each command points to etcd's own tools and writes nothing", async (t) => {
  const dir = tempDir()
  const config = join(dir, 'auth.yaml')
  writeFileSync(config, `version: v1\ndata_dir: ${dir}\nauth_service:\n  storage: { type: etcd, peers: ["127.0.0.1:2379"] }\n`)
  for (const command of ['backup', 'restore']) {
    const file = join(dir, `${command}.db`)
    const result = await run(join(ROOT, 'cli/warrenctl.ts'), [command, `--config=${config}`, file])
    t.equal(result.code, 2, `${command}: a usage error`)
    t.match(result.stderr, /etcdctl snapshot save/, command)
    t.notOk(existsSync(file), `${command}: no file made`)
  }
})

t.test('a restore says what it undoes, each with the command that makes it again', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const ok = async (args: string[]) => {
    const result = await auth.ctl(args)
    t.equal(result.code, 0, `${args.join(' ')} ${result.stderr.trim()}`)
    return result
  }
  for (const name of ['kept', 'fired', 'leaked', 'excused']) await ok(['users', 'add', name, '--logins=root'])
  const tokens = async () => JSON.parse((await auth.ctl(['tokens', 'ls', '--format=json'])).stdout) as { id: string; roles: string[] }[]
  const tokenIds = async () => (await tokens()).map((token) => token.id)
  const newToken = async (args: string[]) => {
    const before = await tokenIds()
    await auth.token(['tokens', 'add', ...args])
    return (await tokenIds()).find((id) => !before.includes(id))!
  }
  const spent = await newToken(['--type=node', '--ttl=1h'])
  const lockId = /ID "([^"]+)"/.exec((await ok(['lock', '--user=excused', '--message=on leave'])).stdout)?.[1] ?? ''
  t.ok(lockId, 'a lock made before the backup')
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${await auth.pin()}`, '--nodename=relabelled'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'relabelled')
  await node.stop()
  const brief = await newToken(['--type=node', '--ttl=5s'])
  const briefEnds = Date.now() + 5_000
  const backup = join(tempDir(), 'warren.db')
  await ok(['backup', backup])

  // Since the backup: a removal, a reset, a lock made and one lifted, a user added, a token
  // made and two deleted (one that has expired by the restore), a label assigned.
  await ok(['tokens', 'rm', brief])
  const idsBefore = await tokenIds()
  await ok(['users', 'rm', 'fired'])
  await ok(['users', 'reset', 'leaked'])
  await ok(['lock', '--user=kept', '--message=on leave'])
  await ok(['lock', 'rm', lockId])
  await ok(['users', 'add', 'newcomer', '--logins=root'])
  await ok(['tokens', 'rm', spent])
  const made = await newToken(['--type=proxy'])
  await ok(['nodes', 'label', 'relabelled', 'env=prod'])
  t.notOk((await tokenIds()).includes(spent))
  t.ok(idsBefore.includes(spent))

  await auth.stop()
  await sleep(Math.max(0, briefEnds - Date.now() + 100))
  const restored = await ok(['restore', backup])
  const line = (start: string) => restored.stdout.split('\n').find((text) => text.startsWith(`  - ${start}`)) ?? ''
  t.match(line('users removed since are back'), /: fired \(|: fired$/)
  t.match(line('users removed since are back'), /warrenctl users rm NAME/)
  t.match(line('users reset or signed up since'), /: leaked$/)
  t.match(line('users added since are gone'), /: newcomer$/)
  t.match(line('locks made since are gone'), /\buser kept\b/, 'the lock made (with those a removal and a reset made)')
  t.match(line('locks lifted since are back'), new RegExp(`: user excused \\(${lockId}\\)$`), 'the lock lifted, with its ID')
  t.match(line('locks lifted since are back'), /warrenctl lock rm ID/)
  t.match(line('tokens used up or deleted since'), new RegExp(`\\b${spent}\\b`), 'the token deleted')
  t.notMatch(restored.stdout, new RegExp(`\\b${brief}\\b`), 'not one deleted that has expired since: it is not valid again')
  t.match(line('tokens made since are gone'), new RegExp(`: ${made}$`), "the token made (not newcomer's invitation, said with the user)")
  t.match(line('tokens made since are gone'), /warrenctl tokens add/)
  t.match(line('hosts whose assigned labels changed since'), /: relabelled$/)
  t.match(line('hosts whose assigned labels changed since'), /warrenctl nodes label/)
  t.notMatch(restored.stdout, /CAs are as they were/, 'no rotation since: nothing said of the CAs')

  const again = await ok(['restore', backup])
  t.match(again.stdout, /^Nothing done since the backup is undone\.$/m, 'a second restore of the same copy undoes nothing')
})
