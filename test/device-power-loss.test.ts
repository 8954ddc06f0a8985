// A node killed in the middle of writing its data dir (power pulled during a renewal, say):
// a process that saves its identity, its tunnel address and audit events in a loop is
// killed with SIGKILL at random moments, many times over the same data dir. Each time the
// next start finds one whole identity, a tunnel address and an audit queue that opens with
// every event it had acknowledged.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { AuditQueue } from '../agent/audit-queue.ts'
import { rememberedTunnelAddress } from '../agent/tunnel-address.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { ROOT, tempDir } from './helpers/cluster.ts'

const KILLS = 40

/** Saves generation after generation; prints each generation once all of it is on disk. */
const WRITER = `
const { saveIdentity } = await import(${JSON.stringify(join(ROOT, 'shared/identity-store.ts'))})
const { rememberTunnelAddress } = await import(${JSON.stringify(join(ROOT, 'agent/tunnel-address.ts'))})
const { AuditQueue } = await import(${JSON.stringify(join(ROOT, 'agent/audit-queue.ts'))})
const [dataDir, first] = process.argv.slice(1)
const queue = new AuditQueue({ path: dataDir + '/audit-queue.jsonl' })
for (let n = Number(first); ; n++) {
  saveIdentity(dataDir, {
    hostId: 'host', nodename: 'gen-' + n, clusterName: 'c', roles: ['node'], authServers: ['proxy:3080'],
    tlsKeyPem: 'key ' + n + '\\n', tlsCertPem: 'cert ' + n + '\\n', sshKeyPem: 'ssh key ' + n + '\\n', sshCert: 'ssh cert ' + n,
    hostCAPems: ['-----BEGIN CERTIFICATE-----\\nCA' + n + '\\n-----END CERTIFICATE-----\\n'], userCASshKeys: ['user ca ' + n], trustVersion: n,
  })
  rememberTunnelAddress(dataDir, 'proxy:3080', { host: 'tunnel', port: 1 + (n % 60000) })
  queue.add({ id: 'event-' + n, time: n, type: 'exec' })
  process.stdout.write(n + '\\n')
}
`

/** Whether every part of the stored identity comes from one generation. */
function whole(dataDir: string): { generation: number } | undefined {
  const identity = loadIdentity(dataDir)
  if (!identity) return undefined
  const n = identity.trustVersion
  const parts = [identity.nodename, identity.tlsKeyPem, identity.tlsCertPem, identity.sshKeyPem, identity.sshCert, identity.hostCAPems.join(''), identity.userCASshKeys[0]]
  const expected = [
    `gen-${n}`,
    `key ${n}\n`,
    `cert ${n}\n`,
    `ssh key ${n}\n`,
    `ssh cert ${n}\n`,
    `-----BEGIN CERTIFICATE-----\nCA${n}\n-----END CERTIFICATE-----\n`,
    `user ca ${n}`,
  ]
  return parts.every((part, i) => part === expected[i]) ? { generation: n } : undefined
}

t.test(`the data dir survives ${KILLS} SIGKILLs in the middle of its writes`, async (t) => {
  const dataDir = tempDir()
  let next = 0
  let confirmed = -1
  for (let kill = 0; kill < KILLS; kill++) {
    const child = spawn(process.execPath, ['--input-type=module', '-e', WRITER, dataDir, String(next)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (data) => (out += data))
    // Killed at once after some writes: anywhere inside one.
    while (!out.includes('\n') && child.exitCode === null) await sleep(5)
    await sleep(Math.random() * 60)
    child.kill('SIGKILL')
    await once(child, 'exit')
    const lines = out.split('\n').filter(Boolean).map(Number)
    confirmed = Math.max(confirmed, ...lines)

    const stored = whole(dataDir)
    if (!stored || stored.generation < confirmed) {
      t.fail(`after kill ${kill + 1} the identity is not whole or older than the last one saved`, { stored, confirmed })
      return
    }
    if (!rememberedTunnelAddress(dataDir, 'proxy:3080')) {
      t.fail(`after kill ${kill + 1} the tunnel address is lost`)
      return
    }
    const queue = new AuditQueue({ path: join(dataDir, 'audit-queue.jsonl') })
    const ids = new Set(queue.peek(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER).map((event) => event.id))
    queue.close()
    const missing = Array.from({ length: confirmed + 1 }, (_, n) => `event-${n}`).filter((id) => !ids.has(id))
    if (missing.length > 0) {
      t.fail(`after kill ${kill + 1} acknowledged audit events are lost`, { missing: missing.slice(0, 5) })
      return
    }
    // Again from the generation on disk: its later writes (address, event) may not have happened.
    next = stored.generation
  }
  t.pass(`${KILLS} kills, ${confirmed + 1} generations: each start found a whole identity, its tunnel address and every audit event`)
})
