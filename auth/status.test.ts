// The auth server's status says how it reaches its backend, so that an etcd reached in the
// clear (auth_service.storage.insecure_plaintext) is seen: a real auth server on a real etcd,
// reached as a peer across a network would be, through this machine's non-loopback address.
// With etcd it also says whether the other auth servers share its recording_dir (alone here:
// test/ha-recordings.test.ts has two); with SQLite, or recording off, no folder is checked.

import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { Etcd3 } from 'etcd3'
import type { Test } from 'tap'
import t from 'tap'
import { formatStatus } from '../cli/status-text.ts'
import { parseConfig } from '../shared/config.ts'
import { createLogger } from '../shared/log.ts'
import type { RecordingDirStatus } from '../shared/status.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, nonLoopbackAddress, relayTo, uniquePrefix } from '../test/helpers/etcd.ts'
import { decode } from './backend/etcd.ts'
import { AuthServer } from './server.ts'
import { authStatus } from './status.ts'

/** An auth server of `storage` (YAML), its JSON log kept as parsed entries; `extra`: more lines of auth_service. */
async function startAuth(t: Test, storage: string, extra: string[] = []) {
  const dataDir = tempDir()
  const config = parseConfig(
    [
      `data_dir: ${dataDir}`,
      'auth_service:',
      '  listen_addr: 127.0.0.1:0',
      '  cluster_name: status-test',
      `  storage: ${storage}`,
      ...extra,
      'ssh_service: { enabled: false }',
    ].join('\n'),
    'status-test.yaml',
  )
  const stream = new PassThrough()
  const auth = new AuthServer(config, createLogger('auth', { level: 'info', format: 'json', stream }))
  const entries = () =>
    String(stream.read() ?? '')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
  t.teardown(() => auth.stop())
  return { auth, dataDir, started: auth.start(), entries }
}

t.test('on SQLite', async (t) => {
  const { auth, started } = await startAuth(t, '{ type: sqlite }')
  await started
  t.same(authStatus(auth).storage, { type: 'sqlite' })
  t.equal(authStatus(auth).recordings, undefined, 'one auth server: its recording_dir is not checked')
})

const unavailable = etcdUnavailable() || (nonLoopbackAddress() === undefined && 'no non-loopback IPv4 address here')
t.test('on etcd', { skip: unavailable }, async (t) => {
  const etcd = await EtcdServer.start()
  t.teardown(() => etcd.stop())
  const client = new Etcd3({ hosts: etcd.clientUrl })
  t.teardown(() => client.close())
  const stored = async (prefix: string) => (await client.getAll().prefix(prefix).keys()).length

  t.test('on loopback over plain http: no TLS, and no peer that sees it in the clear', async (t) => {
    const prefix = uniquePrefix('status')
    const { auth, started, entries, dataDir } = await startAuth(t, `{ type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${prefix}" }`)
    await started
    t.same(authStatus(auth).storage, { type: 'etcd', tls: false, plaintext_peers: [] })
    t.same(
      entries().filter((entry) => entry.level === 'warn'),
      [],
      'no warning',
    )
    const recordings = authStatus(auth).recordings!
    const dir = join(dataDir, 'recordings')
    t.match(recordings, { dir, auth_server_id: /^[0-9a-f]{16}$/, shared_with: [], not_shared_with: [], last_check: String }, 'recording_dir checked: no other auth server live')
    const marker = join(dir, `.warren-auth-server-${recordings.auth_server_id}`)
    t.ok(existsSync(marker), 'its marker is in recording_dir')
    t.equal(await stored(`${prefix}/auth-servers/${recordings.auth_server_id}`), 1, 'and its ID in etcd')
    await auth.stop()
    t.notOk(existsSync(marker), 'a clean stop removes the marker')
    t.equal(await stored(`${prefix}/auth-servers/`), 0, 'and the ID')
  })

  t.test('with auth_service.recording: off, recording_dir is not checked', async (t) => {
    const prefix = uniquePrefix('status')
    const { auth, started, dataDir } = await startAuth(t, `{ type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${prefix}" }`, ['  recording: off'])
    await started
    t.equal(authStatus(auth).recordings, undefined, 'no recordings section')
    t.same(readdirSync(join(dataDir, 'recordings')), [], 'no marker')
    const records = Object.entries(await client.getAll().prefix(`${prefix}/auth-servers/`).buffers()).map(
      ([key, value]) => JSON.parse(decode(value, key).value) as Record<string, unknown>,
    )
    t.equal(records.length, 1, 'its record in etcd, for the keys kept for assignments')
    t.notOk('recording_dir' in records[0], 'with no recording_dir: its peers do not look for its marker')
  })

  t.test('not on loopback without TLS: refused, nothing written or started', async (t) => {
    const relay = await relayTo(t, etcd.clientUrl)
    const prefix = uniquePrefix('status')
    const { started, dataDir } = await startAuth(t, `{ type: etcd, peers: ["${relay.address}"], prefix: "${prefix}" }`)
    await t.rejects(started, { message: new RegExp(`^etcd peer http://${relay.address.replaceAll('.', '\\.')} is not on loopback .*auth_service\\.storage\\.tls with ca_file`) })
    t.equal(relay.connections(), 0, 'the peer was never dialled')
    t.equal(await stored(prefix), 0, 'no CA or anything else in etcd')
    t.same(readdirSync(dataDir), [], 'no admin identity or anything else in the data dir')
  })

  t.test('not on loopback, with insecure_plaintext: true: it starts, warns, and its status shows the peer', async (t) => {
    const relay = await relayTo(t, etcd.clientUrl)
    const prefix = uniquePrefix('status')
    const { auth, started, entries } = await startAuth(t, `{ type: etcd, peers: ["${relay.address}"], prefix: "${prefix}", insecure_plaintext: true }`)
    await started
    const peer = `http://${relay.address}`
    t.same(authStatus(auth).storage, { type: 'etcd', tls: false, plaintext_peers: [peer] })
    t.ok((await stored(prefix)) > 0, 'the CAs are in etcd, through the peer not on loopback')
    t.ok(relay.connections() > 0, 'the peer was dialled')
    const warnings = entries().filter((entry) => entry.level === 'warn')
    t.same(
      warnings.map((entry) => entry.plaintext_peers),
      [[peer]],
      'one warning, naming the peer',
    )
    const text = formatStatus({
      process: { pid: 1, version: 'v', roles: ['auth'], data_dir: '/d', started: new Date().toISOString(), fresh_image: false, young_generation_bytes: 0, last_reload: null },
      auth: authStatus(auth),
    })
    t.ok(text.includes(`etcd backend, WITHOUT TLS to ${peer}`), '`warren status` names the peer reached in the clear')
  })
})

t.test('`warren status` shows whether recording_dir is shared', async (t) => {
  const proc = { pid: 1, version: 'v', roles: ['auth'], data_dir: '/d', started: new Date().toISOString(), fresh_image: false, young_generation_bytes: 0, last_reload: null }
  const ca = { phase: 'standby', mode: null, pins: ['sha256:00'], last_rotated: null, expires: '2036-12-05T12:00:00.000Z', expired: false }
  const auth = (recordings?: RecordingDirStatus) => ({
    cluster: 'c',
    address: '127.0.0.1:3025',
    backend: 'etcd' as const,
    storage: { type: 'etcd' as const, tls: true, plaintext_peers: [] },
    host_ca: ca,
    user_ca: ca,
    handshake_gate: {},
    ...(recordings ? { recordings } : {}),
  })
  const row = (recordings?: RecordingDirStatus) =>
    formatStatus({ process: proc, auth: auth(recordings) })
      .split('\n')
      .find((line) => line.startsWith('Recordings'))
  const of = (shared: string[], notShared: string[]): RecordingDirStatus => ({
    dir: '/srv/rec',
    auth_server_id: 'aa',
    shared_with: shared,
    not_shared_with: notShared,
    last_check: null,
  })
  t.equal(row(), undefined, 'no row when not checked')
  t.equal(row(of([], [])), 'Recordings   /srv/rec, no other auth server live')
  t.equal(row(of(['bb', 'cc'], [])), 'Recordings   /srv/rec, shared with 2 other auth servers')
  t.match(row(of(['bb'], ['cc'])), /^Recordings +\/srv\/rec, NOT shared with 1 of 2 other auth servers \(cc\)/)
})
