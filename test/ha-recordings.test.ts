// Two auth servers (real processes) on one real etcd, and the session recordings nodes upload
// through either. Each keeps its recordings in its recording_dir and reads only that one, so
// with a folder each, a recording uploaded through B is not listed or exported through A: each
// server's status names the other as not sharing (auth.recordings), and `warrenctl recordings
// ls` through A says so. With one shared folder both show it shared, and a recording uploaded
// through B, by a real SSH session through a proxy of B's, is listed and exported through A;
// a recording begun through A goes on through B where A left it, and the open recordings a
// node completed through B no longer count against it on A.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { MAX_OPEN_RECORDINGS } from '../auth/recordings.ts'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { joinCluster } from '../shared/join.ts'
import type { RecordingJson, RecordingList, RecordingStored } from '../shared/protocol/recordings.ts'
import type { RecordingDirStatus } from '../shared/status.ts'
import { AuthProcess, JSON_LOGS, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'
import { until } from './helpers/until.ts'

t.setTimeout(240_000)

const CAST = '{"version":2,"width":80,"height":24,"timestamp":1700000000,"env":{}}\n[0.25,"o","uploaded-through-b\\r\\n"]\n[1.5,"o","bye\\r\\n"]\n'
const HALF = 60

/** A recording ID, the Nth. */
const idOf = (n: number) => `5e1c0b8a-7d2f-4e6a-9b3c-${String(n).padStart(12, '0')}`

const unavailable = etcdUnavailable()
if (unavailable) {
  t.plan(0, unavailable)
} else {
  let etcd: EtcdServer
  t.before(async () => {
    etcd = await EtcdServer.start()
  })
  t.teardown(() => etcd?.stop())

  /** Auth servers A and B on one prefix of the etcd; with `recordingDir`, both keep their recordings there. */
  const pair = async (t: Test, recordingDir?: string): Promise<[AuthProcess, AuthProcess]> => {
    const yaml = [
      `  storage: { type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${uniquePrefix('ha-recordings')}" }`,
      ...(recordingDir ? [`  recording_dir: ${recordingDir}`] : []),
      JSON_LOGS,
    ].join('\n')
    const a = new AuthProcess({ authServiceYaml: yaml })
    const b = new AuthProcess({ authServiceYaml: yaml })
    t.teardown(() => Promise.all([a.stop(), b.stop()]))
    await Promise.all([a.start(), b.start()])
    return [a, b]
  }

  /** The server's `auth.recordings` once `predicate` holds of it. */
  const recordingDir = async (auth: AuthProcess, what: string, predicate: (recordings: RecordingDirStatus) => boolean): Promise<RecordingDirStatus> =>
    (await auth.daemon.waitForStatus(what, (status) => status.auth?.recordings !== undefined && predicate(status.auth.recordings))).auth!.recordings!

  /** The WARNs of the check (their JSON field `not_shared_with`), as `auth` logged them. */
  const notSharedWarnings = (auth: AuthProcess) => auth.daemon.logEntries().filter((entry) => entry.level === 'warn' && Array.isArray(entry.not_shared_with))

  /** A node joined through `via`, and a client of its for each auth server: it uploads chunks itself, as a direct node does. */
  const nodeOn = async (t: Test, via: AuthProcess, servers: AuthProcess[], nodename: string) => {
    const { token } = await via.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 300_000 })
    const identity = await joinCluster({ authServer: via.address, token, caPins: [await via.pin()], nodename, roles: ['node'], warn: () => {} })
    return servers.map((server) => {
      const client = new ApiClient({ server: server.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
      t.teardown(() => client.close())
      return (sessionId: string, from: number, to: number, end = to >= CAST.length): Promise<RecordingStored> =>
        client.call('POST /v1/recordings/chunks', { body: { session_id: sessionId, offset: from, data: Buffer.from(CAST).subarray(from, to).toString('base64'), end } })
    })
  }

  t.test('a recording_dir each: each server names the other as not sharing, and recordings ls through A says so', async (t) => {
    const [a, b] = await pair(t)
    const ofA = await recordingDir(a, 'A to see B', (r) => r.not_shared_with.length === 1)
    const ofB = await recordingDir(b, 'B to see A', (r) => r.not_shared_with.length === 1)
    t.equal(ofA.dir, join(a.dataDir, 'recordings'), "A's own recording_dir")
    t.same(ofA.not_shared_with, [ofB.auth_server_id], 'A: B does not share it')
    t.same(ofA.shared_with, [], 'A: nobody shares it')
    t.same(ofB.not_shared_with, [ofA.auth_server_id], 'B: A does not share it')
    t.same(ofB.shared_with, [], 'B: nobody shares it')
    t.match(ofA.last_check, /^\d{4}-\d\d-\d\dT/, 'A has looked')
    t.ok(existsSync(join(ofA.dir, `.warren-auth-server-${ofA.auth_server_id}`)), "A's marker is in A's folder")
    t.notOk(existsSync(join(ofA.dir, `.warren-auth-server-${ofB.auth_server_id}`)), "and B's is not")
    // Two more checks: the finding is logged when it changes, not at every check.
    const first = ofA.last_check
    const second = (await recordingDir(a, 'another check by A', (r) => r.last_check !== first)).last_check
    await recordingDir(a, 'a third check by A', (r) => r.last_check !== second)
    t.same(
      notSharedWarnings(a).map((entry) => entry.not_shared_with),
      [[ofB.auth_server_id]],
      'A logged one WARN, naming B',
    )
    t.same(
      notSharedWarnings(b).map((entry) => entry.not_shared_with),
      [[ofA.auth_server_id]],
      'B logged one WARN, naming A',
    )

    const [throughA, throughB] = await nodeOn(t, b, [a, b], 'apart-node')
    t.match(await throughB(idOf(1), 0, CAST.length), { length: CAST.length, complete: true }, 'a recording uploaded through B')
    t.same(
      (await b.api<RecordingList>('GET', '/v1/recordings')).recordings.map((r) => r.session_id),
      [idOf(1)],
      'B lists it',
    )
    const listedByA = await a.api<RecordingList>('GET', '/v1/recordings')
    t.same(listedByA.recordings, [], 'A does not list it')
    t.same(listedByA.not_shared_with, [ofB.auth_server_id], "and A's answer names B as keeping recordings elsewhere")
    const ls = await a.ctl(['recordings', 'ls'])
    t.equal(ls.code, 0, 'recordings ls through A succeeds')
    t.equal(ls.stdout, 'No recordings found.\n', 'with an empty list')
    t.match(ls.stderr, /not shared with 1 other live auth server/, 'warrenctl recordings ls through A notes one server keeping its recordings elsewhere')
    const json = await a.ctl(['recordings', 'ls', '--format=json'])
    t.same(JSON.parse(json.stdout), [], 'the JSON on stdout stays a plain list')
    t.match(json.stderr, /not shared with 1 other live auth server/, 'the note goes to stderr with --format=json too')
    const got = await a.ctl(['recordings', 'get', idOf(1)])
    t.not(got.code, 0, 'recordings get through A fails')
    t.match(got.stderr, /1 other live auth server/, 'and says another auth server may hold it')
    const text = await warren(['status', `--data-dir=${a.dataDir}`])
    t.match(text.stdout, /^Recordings +\S+, NOT shared with 1 of 1 other auth server/m, '`warren status` shows it')

    // A node whose upload moves from A to B mid-recording starts again at B from 0.
    t.match(await throughA(idOf(2), 0, HALF, false), { length: HALF, complete: false }, 'the first part through A')
    t.match(await throughB(idOf(2), HALF, CAST.length), { length: 0, complete: false }, 'B holds none of what A holds')
  })

  t.test('one shared recording_dir: both show it shared; what is uploaded through B is listed and exported through A', async (t) => {
    const shared = tempDir('warren-shared-recordings-')
    const [a, b] = await pair(t, shared)
    const ofA = await recordingDir(a, 'A to see B', (r) => r.shared_with.length === 1)
    const ofB = await recordingDir(b, 'B to see A', (r) => r.shared_with.length === 1)
    t.same(ofA, { dir: shared, auth_server_id: ofA.auth_server_id, shared_with: [ofB.auth_server_id], not_shared_with: [], last_check: ofA.last_check }, 'A: shared with B')
    t.same(ofB, { dir: shared, auth_server_id: ofB.auth_server_id, shared_with: [ofA.auth_server_id], not_shared_with: [], last_check: ofB.last_check }, 'B: shared with A')
    t.same((await a.api<RecordingList>('GET', '/v1/recordings')).not_shared_with, [], 'A names no server keeping recordings elsewhere')
    const text = await warren(['status', `--data-dir=${a.dataDir}`])
    t.match(text.stdout, /^Recordings +\S+, shared with 1 other auth server$/m, '`warren status` shows it shared')
    t.same([...notSharedWarnings(a), ...notSharedWarnings(b)], [], 'neither logged a WARN')

    await t.test('an SSH session on a node tunnelled to a proxy of B: listed and exported through A', async (t) => {
      const pin = await b.pin()
      const proxy = await new ProxyProcess({ auth: b, token: await b.token(['tokens', 'add', '--type=proxy']), pin }).start()
      t.teardown(() => proxy.stop())
      const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await b.token()}`, `--ca-pin=${pin}`, '--nodename=shared-node'])
      t.teardown(() => node.stop())
      await waitForNode(a, 'shared-node', 60_000)
      const profile = await signUser(b, proxy.web, 'carol')
      const ssh = spawn('ssh', ['-tt', '-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', `${testLogin()}@shared-node`], { stdio: ['pipe', 'pipe', 'pipe'] })
      let output = ''
      ssh.stdout.on('data', (data) => (output += data))
      ssh.stdin.write('echo through-b-$((6*7))\nexit\n')
      const [code] = await once(ssh, 'exit')
      t.equal(code, 0, `the session ends well: ${output}`)
      t.match(output, 'through-b-42', 'and ran')

      let recording: RecordingJson | undefined
      await until('the recording, listed through A', async () => {
        const listed = await a.ctl(['recordings', 'ls', '--format=json'])
        recording = (JSON.parse(listed.stdout) as RecordingJson[]).find((r) => r.node === 'shared-node' && r.complete)
        return recording !== undefined
      })
      t.match(recording, { user: 'carol', login: testLogin(), node: 'shared-node', complete: true }, 'A lists the session recorded through B')
      const ls = await a.ctl(['recordings', 'ls'])
      t.equal(ls.stderr, '', 'with no note')
      const got = await a.ctl(['recordings', 'get', recording!.session_id])
      t.equal(got.code, 0, got.stderr)
      t.equal(Buffer.byteLength(got.stdout), recording!.size, 'A exports the whole file')
      t.match(got.stdout, 'through-b-42', "with the session's output")
    })

    const [throughA, throughB] = await nodeOn(t, a, [a, b], 'moving-node')

    await t.test('an upload that moves from A to B mid-recording goes on where A left it', async (t) => {
      t.match(await throughA(idOf(1), 0, HALF, false), { length: HALF, complete: false }, 'the first part through A')
      t.match(await throughB(idOf(1), HALF, CAST.length), { length: CAST.length, complete: true }, 'the rest through B: B continues after what A holds')
      const listed = (await a.api<RecordingList>('GET', '/v1/recordings')).recordings.filter((r) => r.session_id === idOf(1))
      t.match(listed, [{ node: 'moving-node', size: CAST.length, complete: true }], 'A lists it once, whole')
      t.equal((await a.ctl(['recordings', 'get', idOf(1)])).stdout, CAST, 'and exports it byte for byte')
    })

    await t.test('recordings opened through A and completed through B no longer count as open on A', async (t) => {
      const ids = Array.from({ length: MAX_OPEN_RECORDINGS }, (_, i) => idOf(100 + i))
      for (const id of ids) await throughA(id, 0, HALF, false)
      const refused = await throughA(idOf(999), 0, HALF, false).catch((error: unknown) => error)
      t.type(refused, ApiError)
      t.equal((refused as ApiError).status, 429, `a node with ${MAX_OPEN_RECORDINGS} open through A is held back there`)
      const completed: boolean[] = []
      for (const id of ids) completed.push((await throughB(id, HALF, CAST.length)).complete)
      t.ok(completed.every(Boolean), `all ${MAX_OPEN_RECORDINGS} completed through B`)
      t.match(await throughB(idOf(999), 0, HALF, false), { length: HALF }, 'B, which completed them, takes a new one')
      t.match(await throughA(idOf(1000), 0, HALF, false), { length: HALF, complete: false }, 'A takes a new recording: the ones completed through B do not hold it back')
    })

    await t.test('an auth server that stops leaves the check: its record and its marker go', async (t) => {
      t.ok(existsSync(join(shared, `.warren-auth-server-${ofA.auth_server_id}`)), "A's marker is in the shared folder")
      await a.stop()
      t.notOk(existsSync(join(shared, `.warren-auth-server-${ofA.auth_server_id}`)), 'A removed its marker')
      const after = await recordingDir(b, 'B to see A gone', (r) => r.shared_with.length === 0)
      t.same(after.not_shared_with, [], 'B names nobody as not sharing: A is not live')
      t.same(notSharedWarnings(b), [], 'and logged no WARN as A stopped')
      t.same(
        readdirSync(shared).filter((name) => name.startsWith('.warren-auth-server-')),
        [`.warren-auth-server-${ofB.auth_server_id}`],
        "B's marker is the only one left",
      )
    })
  })
}
