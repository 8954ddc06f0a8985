// A device's disk fills up (logs, a runaway program): the operator needs to reach it now more
// than ever. A node restarted on a data dir whose filesystem is full takes its lock, opens
// its tunnel and serves SSH, a shell with its recording included, through the proxy; its
// certificates renewed meanwhile serve from memory past the expiry of those on disk, and are
// saved once the disk has room. A proxy does the same. A node joining on a disk with room
// for its join's keys only runs on its identity from memory, and after a power cut joins again
// with the same keys and its spent token; with --forget-token its token file goes once the
// identity is saved, not before. Real processes on a real tmpfs, filled to the last
// byte (or page); host certificates of 15 s, renewed every 10.

import { X509Certificate } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { lockHolder } from '../shared/data-dir-lock.ts'
import { identityExists, loadIdentity } from '../shared/identity-store.ts'
import { pendingJoinKeysPath } from '../shared/pending-join-keys.ts'
import type { NodeStatus, ProxyStatus } from '../shared/status.ts'
import { readStatus, statusSocketPath } from '../shared/status-socket.ts'
import { AuthProcess, Daemon, JSON_LOGS, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { cannotMountTmpfs, fillDisk, mountTmpfs } from './helpers/full-disk.ts'
import { until } from './helpers/until.ts'

t.test('a node restarted on a full disk comes back and serves SSH', { skip: cannotMountTmpfs }, async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 15s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const user = await signUser(auth, proxy.web)
  const joinedDir = tempDir()
  const configOf = (dataDir: string) => ['version: v1', `data_dir: ${dataDir}`, 'ssh_service:', '  listen_addr: 127.0.0.1:0', JSON_LOGS].join('\n')
  writeFileSync(join(joinedDir, 'warren.yaml'), configOf(joinedDir))
  const first = startNode([`--config=${join(joinedDir, 'warren.yaml')}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=full-1'])
  await waitForNode(auth, 'full-1')
  await first.stop()

  const mount = mountTmpfs(t, '4m')
  const dataDir = join(mount, 'data')
  cpSync(joinedDir, dataDir, { recursive: true })
  writeFileSync(join(dataDir, 'warren.yaml'), configOf(dataDir))
  fillDisk(t, mount)

  const node = startNode([`--config=${join(dataDir, 'warren.yaml')}`])
  t.teardown(() => node.stop())
  const status = async () => (await readStatus<{ node?: NodeStatus }>(statusSocketPath(dataDir)).catch(() => undefined))?.node
  await until('its tunnel, as its status says', async () => (await status())?.tunnel?.proxies.length === 1, { timeoutMs: 30_000 })
  t.equal(lockHolder(dataDir)?.pid, node.child.pid, 'it holds its data dir’s lock')

  const command = await openssh(user, [`${testLogin()}@full-1`, 'echo reached'])
  t.equal(command.stdout, 'reached\n', `a command runs (${command.stderr.trim()})`)
  const shell = await openssh(user, ['-tt', `${testLogin()}@full-1`, 'echo on a pty'])
  t.match(shell.stdout, /on a pty/, `a shell on a pty runs, its recording refused by the disk (${shell.stderr.trim()})`)

  // Renewed while the disk refuses to save: the status says so, and the certificates on disk
  // expire while the node goes on with its new ones.
  const onDisk = loadIdentity(dataDir)!
  await until('a renewal the disk refused', async () => (await status())?.identity_unsaved !== undefined, { timeoutMs: 30_000 })
  const unsaved = await status()
  t.match(unsaved?.identity_unsaved, { error: /ENOSPC/ }, 'the status names the refusal')
  t.not(unsaved?.certificate.serial, new X509Certificate(onDisk.tlsCertPem).serialNumber, 'the node holds new certificates')
  await sleep(Math.max(0, new X509Certificate(onDisk.tlsCertPem).validToDate.getTime() - Date.now()) + 1000)
  const later = await openssh(user, [`${testLogin()}@full-1`, 'echo reached'])
  t.equal(later.stdout, 'reached\n', `past the expiry of the certificates on disk, still reached (${later.stderr.trim()})`)

  rmSync(join(mount, 'filler'))
  await until('the identity saved', async () => (await status())?.identity_unsaved === undefined, { timeoutMs: 30_000 })
  const saved = loadIdentity(dataDir)!
  t.ok(new X509Certificate(saved.tlsCertPem).validToDate.getTime() > Date.now(), 'once the disk has room, the data dir holds certificates in date')
  t.equal(node.child.exitCode, null, 'the node is still running')
})

t.test('a proxy restarted on a full disk renews from memory and saves once it can', { skip: cannotMountTmpfs }, async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 15s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const joined = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  await joined.stop()

  const mount = mountTmpfs(t, '4m')
  const dataDir = join(mount, 'data')
  cpSync(joined.dataDir, dataDir, { recursive: true })
  // The same config (and so the same ports) but for its data dir.
  writeFileSync(join(dataDir, 'warren.yaml'), readFileSync(joined.configPath, 'utf8').replace(`data_dir: ${joined.dataDir}`, `data_dir: ${dataDir}`))
  fillDisk(t, mount)

  const proxy = new Daemon(['start', '--roles=proxy', `--config=${join(dataDir, 'warren.yaml')}`])
  t.teardown(() => proxy.stop())
  const status = async () => (await readStatus<{ proxy?: ProxyStatus }>(statusSocketPath(dataDir)).catch(() => undefined))?.proxy
  const web = (await proxy.waitForStatus('the proxy to listen', (s) => s.proxy !== undefined)).proxy!.listen.web
  t.equal(lockHolder(dataDir)?.pid, proxy.child.pid, 'it holds its data dir’s lock')

  // A node (on a disk with room) reached through it, before and after the certificate on disk expires.
  const user = await signUser(auth, web)
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=behind-full'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'behind-full')
  await until('the node’s tunnel to it', async () => (await status())?.tunnels.count === 1, { timeoutMs: 30_000 })

  const onDisk = new X509Certificate(loadIdentity(dataDir, 'proxy')!.tlsCertPem)
  await until('a renewal the disk refused', async () => (await status())?.identity_unsaved !== undefined, { timeoutMs: 30_000 })
  const unsaved = await status()
  t.match(unsaved?.identity_unsaved, { error: /ENOSPC/ }, 'the status names the refusal')
  t.not(unsaved?.certificate.serial, onDisk.serialNumber, 'the proxy holds a new certificate')
  await sleep(Math.max(0, onDisk.validToDate.getTime() - Date.now()) + 1000)
  t.ok(Date.parse((await status())!.certificate.not_after) > Date.now(), 'past the expiry of the certificate on disk, the one it uses is in date')
  const later = await openssh(user, [`${testLogin()}@behind-full`, 'echo reached'])
  t.equal(later.stdout, 'reached\n', `past the expiry of the certificate on disk, the node is reached through it (${later.stderr.trim()})`)

  rmSync(join(mount, 'filler'))
  await until('the identity saved', async () => (await status())?.identity_unsaved === undefined, { timeoutMs: 30_000 })
  const saved = new X509Certificate(loadIdentity(dataDir, 'proxy')!.tlsCertPem)
  t.ok(saved.validToDate.getTime() > Date.now(), 'once the disk has room, the data dir holds a certificate in date')
  t.equal(proxy.child.exitCode, null, 'the proxy is still running')
})

/**
 * A node's data dir on a tmpfs of its own with one page left: room for a join's keys, none
 * for the identity. Freeing room: remove `<mount>/filler`.
 */
function onePageLeft(t: Test): { mount: string; dataDir: string; config: string } {
  const mount = mountTmpfs(t, '1m')
  const dataDir = join(mount, 'data')
  mkdirSync(dataDir, { mode: 0o700 })
  const config = join(tempDir(), 'warren.yaml')
  writeFileSync(config, ['version: v1', `data_dir: ${dataDir}`, 'ssh_service:', '  listen_addr: 127.0.0.1:0', JSON_LOGS].join('\n'))
  fillDisk(t, mount, 1)
  return { mount, dataDir, config }
}

t.test('a node that joins on a full disk runs from memory, and after a power cut joins again with the keys it kept', { skip: cannotMountTmpfs }, async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const user = await signUser(auth, proxy.web)

  const { mount, dataDir, config } = onePageLeft(t)

  // A single-use token: once the join is answered, only a repeat with the same keys is.
  const args = [`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=full-join-1']
  const first = startNode(args)
  t.teardown(() => first.stop())
  const status = async () => (await readStatus<{ node?: NodeStatus }>(statusSocketPath(dataDir)).catch(() => undefined))?.node
  await until('its tunnel, as its status says', async () => (await status())?.tunnel?.proxies.length === 1, { timeoutMs: 30_000 })
  const joined = (await status())!
  t.match(joined.identity_unsaved, { error: /ENOSPC/ }, 'the status says the identity is not saved')
  t.notOk(identityExists(dataDir), 'the data dir holds no identity')
  t.ok(existsSync(pendingJoinKeysPath(dataDir, 'node')), "but the join's keys")
  const partial = readdirSync(dataDir, { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith('.tmp'))
  t.same(partial, [], 'and no part of a refused write, which would hold on to room a retry needs')
  const command = await openssh(user, [`${testLogin()}@full-join-1`, 'echo reached'])
  t.equal(command.stdout, 'reached\n', `the node is reached on its identity in memory (${command.stderr.trim()})`)

  // The power goes before the disk has room; it comes back with room, and the same command.
  await first.stop('SIGKILL')
  rmSync(join(mount, 'filler'))
  const second = startNode(args)
  t.teardown(() => second.stop())
  await until('its tunnel again', async () => (await status())?.tunnel?.proxies.length === 1, { timeoutMs: 30_000 })
  const again = (await status())!
  t.equal(again.host_id, joined.host_id, 'the spent token repeated the join: the same host')
  t.equal(again.identity_unsaved, undefined, 'its identity is saved now')
  t.equal(loadIdentity(dataDir)?.hostId, joined.host_id, 'in the data dir')
  t.notOk(existsSync(pendingJoinKeysPath(dataDir, 'node')), "and the join's keys are gone")
  const later = await openssh(user, [`${testLogin()}@full-join-1`, 'echo reached'])
  t.equal(later.stdout, 'reached\n', `reached (${later.stderr.trim()})`)
})

t.test('a node that joins on a full disk with --forget-token removes its token file once its identity is saved', { skip: cannotMountTmpfs }, async (t) => {
  // Certificates of 15 s: the renewal 10 s in is a save that finds the disk with room.
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 15s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())

  // A multi-use token (the default), which would let hosts join from wherever it is left.
  const tokenFile = join(tempDir(), 'node-token')
  writeFileSync(tokenFile, `${await auth.token(['tokens', 'add', '--type=node'])}\n`, { mode: 0o600 })
  const { mount, dataDir, config } = onePageLeft(t)

  const node = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${tokenFile}`, '--forget-token', `--ca-pin=${pin}`, '--nodename=full-forget-1'])
  t.teardown(() => node.stop())
  const status = async () => (await readStatus<{ node?: NodeStatus }>(statusSocketPath(dataDir)).catch(() => undefined))?.node
  await until('its tunnel, as its status says', async () => (await status())?.tunnel?.proxies.length === 1, { timeoutMs: 30_000 })
  const joined = (await status())!
  t.match(joined.identity_unsaved, { error: /ENOSPC/ }, 'the identity is not saved')
  t.ok(existsSync(tokenFile), 'so the token file is kept: a restart now joins again with it')

  rmSync(join(mount, 'filler'))
  await until('the identity saved and the token file removed', async () => (await status())?.identity_unsaved === undefined && !existsSync(tokenFile), {
    timeoutMs: 40_000,
  })
  t.equal(loadIdentity(dataDir)?.hostId, joined.host_id, 'the identity on disk is the one it joined with')
  t.notOk(existsSync(pendingJoinKeysPath(dataDir, 'node')), "the join's keys are gone with the token")
  t.equal(node.child.exitCode, null, 'the node runs on')
})
