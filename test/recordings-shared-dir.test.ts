// The auth server and a node sharing one data dir, with real processes: `warren start`
// without --roles runs auth, proxy and node in one process whose auth_service.recording_dir
// is <data_dir>/recordings (README's example). A session on that node and one on a second
// node (its own data dir, through the proxy) are both recorded and exported whole with
// `warrenctl recordings get`: the node's outbox is <data_dir>/node-recordings, so its
// uploader neither deletes the store's copy of its own recording nor drops the other
// node's as refused. A config whose recording_dir is the node's outbox is refused at load.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { RecordingJson } from '../shared/protocol/recordings.ts'
import { ctl, Daemon, freePort, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'

t.setTimeout(120_000)

t.test('auth and node in one data dir: the recordings of both nodes are kept and exported whole', async (t) => {
  const dir = tempDir()
  const web = `127.0.0.1:${await freePort()}`
  const config = join(dir, 'warren.yaml')
  writeFileSync(
    config,
    [
      'version: v1',
      `data_dir: ${dir}`,
      'nodename: hub',
      'auth_service:',
      '  listen_addr: 127.0.0.1:0',
      '  cluster_name: shared-dir',
      `  recording_dir: ${join(dir, 'recordings')}`,
      'proxy_service:',
      `  web_listen_addr: ${web}`,
      `  tunnel_listen_addr: 127.0.0.1:${await freePort()}`,
      'ssh_service:',
      '  listen_addr: 127.0.0.1:0',
      '',
    ].join('\n'),
  )
  const all = new Daemon(['start', `--config=${config}`])
  t.teardown(() => all.stop())
  await all.waitFor('the auth server', () => existsSync(join(dir, 'admin', 'identity.json')), 30_000)
  const admin = (args: string[]) => ctl(dir, args)
  await waitForNode({ ctl: admin }, 'hub', 30_000)
  const pin = /CA pin\s+(sha256:[0-9a-f]{64})/.exec((await admin(['status'])).stdout)![1]
  const token = /The invite token: (\S+)/.exec((await admin(['nodes', 'add'])).stdout)![1]
  const edge = startNode([`--data-dir=${tempDir()}`, `--auth-server=${web}`, `--token=${token}`, `--ca-pin=${pin}`, '--nodename=edge'])
  t.teardown(() => edge.stop())
  await waitForNode({ ctl: admin }, 'edge', 30_000)

  const login = testLogin()
  await admin(['users', 'add', 'carol', `--logins=${login}`])
  const profile = tempDir('warren-user-')
  const signed = await admin(['auth', 'sign', '--user=carol', '--ttl=1h', `--out=${profile}`, '--format=openssh', `--proxy=${web}`])
  t.equal(signed.code, 0, signed.stderr)

  const recordings = async (): Promise<RecordingJson[]> => JSON.parse((await admin(['recordings', 'ls', '--format=json'])).stdout) as RecordingJson[]
  const complete = async (count: number): Promise<RecordingJson[]> => {
    let listed = await recordings()
    for (let i = 0; i < 180 && listed.filter((r) => r.complete).length < count; i++) {
      await sleep(250)
      listed = await recordings()
    }
    return listed
  }
  /** An interactive `ssh -tt` session on `node` that prints `<node>-42`. */
  const session = async (node: string) => {
    const ssh = spawn('ssh', ['-tt', '-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', `${login}@${node}`], { stdio: ['pipe', 'pipe', 'pipe'] })
    let output = ''
    ssh.stdout.on('data', (data) => (output += data))
    ssh.stdin.write(`echo ${node}-$((6*7))\nexit\n`)
    const [code] = await once(ssh, 'exit')
    t.equal(code, 0, output)
    t.match(output, `${node}-42`)
  }

  // The other node's recording reaches the store first; the hub's uploader runs after its own session.
  await session('edge')
  t.equal((await complete(1)).length, 1, "the edge node's recording is stored")
  await session('hub')
  const listed = await complete(2)
  t.equal(listed.filter((r) => r.complete).length, 2, 'both recordings complete')
  for (const node of ['edge', 'hub']) {
    const recording = listed.find((r) => r.node === node)
    t.ok(recording, `a recording of ${node}`)
    if (!recording) continue
    const got = await admin(['recordings', 'get', recording.session_id])
    t.equal(got.code, 0, `recordings get ${node}: ${got.stderr}`)
    t.equal(Buffer.byteLength(got.stdout), recording.size, `${node}: the whole file`)
    t.match(got.stdout, `${node}-42`, `${node}: the session's output`)
  }
  // A moment for anything late: the store's files stay, the hub's outbox is emptied.
  await sleep(1000)
  const stored = readdirSync(join(dir, 'recordings'))
  for (const recording of listed) t.ok(stored.includes(`${recording.session_id}.cast`), `the store keeps ${recording.node}'s file`)
  t.same(readdirSync(join(dir, 'node-recordings')), [], "the hub's outbox holds nothing once uploaded")
})

t.test("a recording_dir that is the node's outbox is refused at load", async (t) => {
  const dir = tempDir()
  const cases: [string, string[]][] = [
    [`${dir}/node-recordings`, []],
    [`${dir}/./node-recordings/`, []],
    // --data-dir moves the outbox onto the recording_dir the file names.
    [join(dir, 'elsewhere', 'node-recordings'), [`--data-dir=${join(dir, 'elsewhere')}`]],
  ]
  for (const [i, [recordingDir, flags]] of cases.entries()) {
    const file = join(dir, `case-${i}.yaml`)
    writeFileSync(file, ['version: v1', `data_dir: ${dir}`, 'auth_service:', `  recording_dir: ${recordingDir}`, ''].join('\n'))
    const result = await warren(['start', '--roles=node', `--config=${file}`, ...flags], { timeoutMs: 20_000 })
    t.equal(result.code, 1, `refused as a config error: ${recordingDir} ${flags.join(' ')}`)
    t.match(result.stderr, /auth_service\.recording_dir .* is the node's own folder of recordings waiting to upload/)
    t.match(result.stderr, flags.length ? '--data-dir' : file, 'the message names where the data dir came from')
  }
  t.notOk(existsSync(join(dir, 'elsewhere')), 'nothing was started')
})
