// The auth server's disk is lost: its backend held both CAs, and without them every device
// would have to join again. `warrenctl backup` copied it while the auth server ran;
// `warrenctl restore` puts the copy back once it is stopped, and the cluster carries on: the
// same CA pin, the node behind its tunnel listed again, and a user's certificate from before
// reaching it over OpenSSH. What changed after the copy (a token made since) is gone with
// the restore, as its output says (`--format=json`: a record for each item, with the command
// that makes it again). Real processes and real OpenSSH.

import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { RestoreReport } from '../cli/ctl/backup.ts'
import { AuthProcess, ctl, freePort, openssh, ProxyProcess, ROOT, run, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'

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

  const hostId = (JSON.parse((await ok(['nodes', 'ls', '--all', '--format=json'])).stdout) as { host_id: string; nodename: string }[]).find(
    (host) => host.nodename === 'relabelled',
  )?.host_id
  t.ok(hostId, 'the relabelled host listed')

  await auth.stop()
  await sleep(Math.max(0, briefEnds - Date.now() + 100))
  const backend = join(auth.dataDir, 'backend.db')
  const files = () => readdirSync(auth.dataDir).sort()
  const [filesBefore, backendBefore] = [files(), readFileSync(backend)]
  // The same restore in text, into a copy of the data dir as it is now.
  const copy = tempDir()
  cpSync(auth.dataDir, copy, { recursive: true })

  const misspelt = await auth.ctl(['restore', '--format=yml', backup])
  t.equal(misspelt.code, 2, 'an unknown --format is a usage error')
  t.match(misspelt.stderr, /unknown --format "yml".*use text or json/, 'naming the flag and the formats')
  t.equal(misspelt.stdout, '')
  t.same(files(), filesBefore, 'and nothing is restored: no backend kept aside')
  t.ok(readFileSync(backend).equals(backendBefore), 'the backend untouched')

  const report = JSON.parse((await ok(['restore', '--format=json', backup])).stdout) as RestoreReport
  t.match(report, { cluster_name: String, records: Number, backend, kept_as: new RegExp(`^${backend}\\.before-restore-`), undone_unknown: null })
  const undone = report.undone ?? []
  const of = (kind: string) =>
    undone
      .filter((item) => item.kind === kind)
      .map(({ subject, id, command }) => ({ subject, id, command }))
      .sort((a, b) => a.subject.localeCompare(b.subject))
  t.ok(
    undone.every((item) => (item.command === null) === (typeof item.command_unavailable === 'string')),
    'command_unavailable says why exactly where there is no command',
  )
  t.same(of('user_removed'), [{ subject: 'fired', id: null, command: 'warrenctl users rm fired' }])
  t.same(of('user_reset'), [{ subject: 'leaked', id: null, command: 'warrenctl users reset leaked' }])
  t.same(of('user_added'), [{ subject: 'newcomer', id: null, command: 'warrenctl users add --logins=root --roles=access newcomer' }])
  t.match(
    of('lock_made'),
    [
      { subject: 'user fired', command: null },
      { subject: 'user kept', command: "warrenctl lock --user=kept '--message=on leave'" },
      { subject: 'user leaked', command: null },
    ],
    'the lock made, and those the removal and the reset made, which their own commands make again',
  )
  t.equal(of('lock_made').length, 3)
  t.same(of('lock_lifted'), [{ subject: 'user excused', id: lockId, command: `warrenctl lock rm ${lockId}` }], 'the lock lifted, with its ID')
  // With the sign-up tokens of the users removed and reset since.
  t.same(
    of('token_used').find((item) => item.subject === spent),
    { subject: spent, id: null, command: `warrenctl tokens rm ${spent}` },
    'the token deleted',
  )
  t.notOk(
    of('token_used').some((item) => item.subject === brief),
    'not one deleted that has expired since: it is not valid again',
  )
  t.match(of('token_made'), [{ subject: made, id: null, command: /^warrenctl tokens add --type=proxy --ttl=\d+m(\d+s)?$/ }], "the token made, not newcomer's invitation")
  t.equal(of('token_made').length, 1)
  t.same(of('host_labels_changed'), [{ subject: 'relabelled', id: hostId, command: `warrenctl nodes label ${hostId} env=prod` }])
  t.same(
    [...new Set(undone.map((item) => item.kind))],
    ['user_removed', 'user_reset', 'user_added', 'lock_made', 'lock_lifted', 'host_labels_changed', 'token_used', 'token_made'],
    'nothing else (no rotation since), in this order',
  )

  const text = await ctl(copy, ['restore', backup])
  t.equal(text.code, 0, text.stderr)
  const lines = text.stdout.split('\n').filter((line) => line.startsWith('  - '))
  const starts: Record<string, string> = {
    user_removed: 'users removed since',
    user_reset: 'users reset or signed up since',
    user_added: 'users added since',
    lock_made: 'locks made since',
    lock_lifted: 'locks lifted since',
    host_labels_changed: 'hosts whose assigned labels changed since',
    token_used: 'tokens used up or deleted since',
    token_made: 'tokens made since',
  }
  for (const item of undone) {
    const line = lines.find((line) => line.startsWith(`  - ${starts[item.kind]}`)) ?? ''
    const name = item.kind === 'lock_lifted' ? `${item.subject} (${item.id})` : item.subject
    t.ok(line.includes(`: ${name}`) || line.includes(`, ${name}`), `the text names ${item.kind} ${name}`)
  }

  const again = JSON.parse((await ok(['restore', '--format=json', backup])).stdout) as RestoreReport
  t.same(again.undone, [], 'a second restore of the same copy undoes nothing')
})

t.test('backup and restore refuse folders others may write into, as warren start does, and change nothing', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const good = join(tempDir(), 'warren.db')
  t.equal((await auth.ctl(['backup', good])).code, 0, 'a backup into a private folder')
  const sharedDir = (mode: number) => {
    const dir = join(tempDir(), 'shared')
    mkdirSync(dir)
    chmodSync(dir, mode)
    return dir
  }
  const refusedWith = (result: { code: number; stderr: string }, what: string, pattern: RegExp, message: string) => {
    t.equal(result.code, 1, `${message}: refused`)
    t.match(result.stderr, pattern, `${message}: the error names ${what}`)
  }

  const shared = sharedDir(0o1777)
  refusedWith(
    await auth.ctl(['backup', join(shared, 'warren.db')]),
    'the folder',
    /the folder of the backup .* is writable by users other than its owner \(mode 1777/,
    'a backup into /tmp-like folder',
  )
  t.same(readdirSync(shared), [], 'nothing is written there')
  t.equal(statSync(shared).mode & 0o7777, 0o1777, 'whose mode is left as it was')

  // A backend in a folder others may write into, as warren start refuses it.
  const storage = sharedDir(0o1777)
  cpSync(join(auth.dataDir, 'backend.db'), join(storage, 'backend.db'))
  const configDir = tempDir()
  const config = join(configDir, 'auth.yaml')
  writeFileSync(config, `version: v1\ndata_dir: ${join(configDir, 'data')}\nauth_service:\n  storage: { type: sqlite, path: ${join(storage, 'backend.db')} }\n`)
  const warrenctl = (args: string[]) => run(join(ROOT, 'cli/warrenctl.ts'), [...args, `--config=${config}`])
  const copy = join(tempDir(), 'copy.db')
  refusedWith(
    await warrenctl(['backup', copy]),
    "the backend's folder",
    /the folder of auth_service\.storage\.path .* is writable by users other than its owner/,
    'a backup of a backend in such a folder',
  )
  t.notOk(existsSync(copy), 'no copy is made')
  refusedWith(
    await warrenctl(['restore', good]),
    "the backend's folder",
    /the folder of auth_service\.storage\.path .* is writable by users other than its owner/,
    'a restore into such a folder',
  )
  t.same(readdirSync(storage), ['backend.db'], 'nothing is written beside the backend')
  t.notOk(existsSync(join(configDir, 'data')), 'nor a data dir made')

  await auth.stop()
  const backend = join(auth.dataDir, 'backend.db')
  const contents = () => readFileSync(backend)
  const before = contents()
  const listing = () => readdirSync(auth.dataDir).sort()
  const entries = listing()

  const planted = sharedDir(0o777)
  cpSync(good, join(planted, 'warren.db'))
  refusedWith(
    await auth.ctl(['restore', join(planted, 'warren.db')]),
    'the folder',
    /the folder of the backup .* is writable by users other than its owner \(mode 0777/,
    'a restore from a folder others may write into',
  )
  t.ok(contents().equals(before), 'the backend is untouched')
  t.same(listing(), entries, 'and nothing is added beside it')

  chmodSync(auth.dataDir, 0o777)
  refusedWith(
    await auth.ctl(['restore', good]),
    'the data dir',
    /data dir .* is writable by users other than its owner \(mode 0777/,
    'a restore into a data dir others may write into',
  )
  t.equal(statSync(auth.dataDir).mode & 0o777, 0o777, "the data dir's mode is left as it was")
  t.ok(contents().equals(before), 'the backend is untouched')
  t.same(listing(), entries, 'and nothing is added beside it')

  chmodSync(auth.dataDir, 0o700)
  const restored = await auth.ctl(['restore', good])
  t.equal(restored.code, 0, `from a private folder into a private data dir, the restore goes ahead ${restored.stderr.trim()}`)
})
