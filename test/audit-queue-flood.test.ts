// A logged-in user tries to erase a command of theirs from the audit trail, with stock ssh and
// sftp against real processes: sftp batches of mkdir/rmdir with long paths spend the node's
// budget at the auth server, so that the node's events wait in its queue; the command runs;
// a second flood fills the queue past its bounds, which drop events. The sftp events go, the
// command's exec event stays and reaches `audit ls`, and every drop is told there in
// events.dropped events naming the user, as many as `warren status` counts.

import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { AuthProcess, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'

t.setTimeout(600_000)

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
t.teardown(() => proxy.stop())
const login = testLogin()
const nodeDir = tempDir()
writeFileSync(join(nodeDir, 'warren.yaml'), `version: v1\ndata_dir: ${nodeDir}\nssh_service:\n  listen_addr: 127.0.0.1:0\n`)
const node = startNode([`--config=${join(nodeDir, 'warren.yaml')}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-flood'])
t.teardown(() => node.stop())
await waitForNode(auth, 'pi-flood')
const mallory = await signUser(auth, proxy.web, 'mallory')

async function auditLs(query: Record<string, string>): Promise<AuditEvent[]> {
  return (await auth.api<{ events: AuditEvent[] }>('GET', `/v1/audit/events?${new URLSearchParams({ since: '0', node: 'pi-flood', ...query })}`)).events
}

/** Runs `sftp -b` as mallory with `count` mkdir/rmdir pairs of paths of about 1,000 characters: about 1.3 KB an event. */
async function flood(from: number, count: number): Promise<void> {
  const base = `/tmp/warren-flood-${randomUUID().slice(0, 8)}`
  const long = 'A'.repeat(240)
  const dirs = [base, `${base}/${long}`, `${base}/${long}/${long}`, `${base}/${long}/${long}/${long}`]
  const lines = dirs.map((dir) => `mkdir ${dir}`)
  for (let i = from; i < from + count; i++) lines.push(`mkdir ${dirs[3]}/${'B'.repeat(200)}${i}`, `rmdir ${dirs[3]}/${'B'.repeat(200)}${i}`)
  const batch = join(tempDir('warren-flood-batch-'), 'batch')
  writeFileSync(batch, `${lines.join('\n')}\n`)
  const sftp = spawn('sftp', ['-F', join(mallory, 'ssh_config'), '-o', 'BatchMode=yes', '-b', batch, `${login}@pi-flood`], { stdio: ['ignore', 'ignore', 'pipe'] })
  let errors = ''
  sftp.stderr.on('data', (chunk) => (errors += chunk))
  const [code] = await once(sftp, 'exit')
  if (code !== 0) throw new Error(`sftp: ${errors.slice(0, 500)}`)
}

async function until<T>(what: string, find: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = await find().catch(() => undefined)
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(500)
  }
}

t.test("a user's sftp flood fills the node's queue: their command's exec event is kept and delivered, and the drops are told", async (t) => {
  const tag = `hidden-${randomUUID()}`
  await flood(0, 800)
  const ran = await openssh(mallory, [`${login}@pi-flood`, `echo ${tag}`])
  t.equal(ran.code, 0, ran.stderr)
  await flood(100_000, 3000)
  const { events } = (await node.waitForStatus('events dropped from the queue', (status) => (status.node?.events?.dropped ?? 0) > 0)).node!
  t.ok(events!.dropped > 0, `the queue overflowed: ${events!.dropped} dropped`)

  const exec = await until('the exec event', async () => (await auditLs({ type: 'exec', user: 'mallory' })).find((e) => String(e.command).includes(tag)))
  t.match(exec, { user: 'mallory', login, session_id: /\S/ }, 'the command reached the audit log')
  const [start] = await auditLs({ type: 'session.start', user: 'mallory' }).then((all) => all.filter((e) => e.session_id === exec.session_id))
  t.ok(start, "and its session's start")

  // Every drop is told (events.dropped events go ahead of the rest): their sum is the node's count, final once the floods are over.
  const { dropped } = (await node.status()).node!.events!
  const told = await until('every drop told', async () => {
    const gaps = await auditLs({ type: 'events.dropped' })
    return gaps.reduce((sum, e) => sum + Number(e.dropped), 0) === dropped ? gaps : undefined
  })
  t.ok(
    told.every((e) => String(e.users).split(',').includes('mallory') && /^sftp=\d+$/.test(String(e.types))),
    `each names mallory, and only sftp events were dropped: ${told.map((e) => `${e.types} ${e.users}`).join('; ')}`,
  )
  t.ok((await auditLs({ type: 'events.dropped', user: 'mallory' })).length > 0, "found by `audit ls --user=mallory`: mallory's sessions alone lost events")
})
