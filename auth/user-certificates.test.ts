// The signed known_hosts an auth server answers before every `warren proxy ssh`: signed once
// and answered as it is while nothing changes, and signed again when its clock was set, so
// that clients, which refuse a signature far from their own time, never get one from the
// auth server's wrong past or future.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { knownHostsSigned } from '../shared/signed-known-hosts.ts'
import type { AuthContext } from './api/context.ts'
import { loadOrCreateAuthority } from './authorities.ts'
import { SqliteBackend } from './backend/sqlite.ts'
import { NodeDirectory } from './nodes.ts'
import { signedKnownHosts } from './user-certificates.ts'

t.test('a clock set back signs known_hosts again, at the time it now reads', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-known-hosts-'))
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  const realNow = Date.now
  let offset = 3600_000
  Date.now = () => realNow() + offset
  t.teardown(() => {
    Date.now = realNow
    backend.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const hostCA = await loadOrCreateAuthority(backend, 'host', 'kh')
  const context = { clusterName: 'kh', nodes: new NodeDirectory(backend, 60_000), hostCA: () => hostCA } as unknown as AuthContext
  const ahead = await signedKnownHosts(context)
  t.equal(await signedKnownHosts(context), ahead, 'the same answer while nothing changes')
  offset = 0 // the clock ran an hour ahead; NTP sets it back
  const now = await signedKnownHosts(context)
  t.not(now, ahead, 'signed again')
  t.ok(knownHostsSigned('kh', now.known_hosts, now.known_hosts_signatures, hostCA.tlsCertPems, realNow()), 'a client with the right time takes it')
})
