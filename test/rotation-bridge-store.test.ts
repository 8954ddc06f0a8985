// The bridges a host CA rotation keeps at standby (auth/rotation.ts), in both backends: stored
// with the step, for the host certificate lifetime plus the recovery window, signed by the old
// and the new CA so that a node trusting only the old one takes it; manual mode as automatic;
// none for a rollback or a user CA rotation; one per rotation, read as a chain.

import t, { type Test } from 'tap'
import { loadAuthority, loadOrCreateAuthority } from '../auth/authorities.ts'
import { type Backend, openBackend } from '../auth/backend/index.ts'
import { advanceAutomatic, rotate } from '../auth/rotation.ts'
import { bridgeKey, readBridges, trustStatement } from '../auth/trust.ts'
import { caPin } from '../shared/pin.ts'
import { checkTrust, type TrustStatement } from '../shared/trust-statement.ts'
import { tempDir } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'

const CLUSTER = 'bridge-cluster'
const HOUR = 3_600_000
const options = { bridgeTtlMs: 5 * HOUR }

async function manualRotation(backend: Backend, type: 'host' | 'user', now: number): Promise<void> {
  for (const [i, phase] of (['init', 'update_clients', 'update_servers', 'standby'] as const).entries()) {
    await rotate(backend, { type, mode: 'manual', phase, gracePeriodMs: HOUR }, options, now + i)
  }
}

/** What a node that joined before the rotation holds: the set then, as the auth server signed it. */
async function heldBefore(backend: Backend) {
  const host = (await loadAuthority(backend, 'host')).authority
  const user = (await loadAuthority(backend, 'user')).authority
  const statement = trustStatement(CLUSTER, host, user)
  return { clusterName: CLUSTER, hostCAPems: statement.host_ca_certs, userCASshKeys: statement.user_ca_ssh_keys, version: statement.version }
}

async function bridgesIn(t: Test, backend: Backend): Promise<void> {
  await loadOrCreateAuthority(backend, 'host', CLUSTER)
  await loadOrCreateAuthority(backend, 'user', CLUSTER)
  const held = await heldBefore(backend)
  const pinA = caPin(held.hostCAPems[0])

  // A rollback drops the new CA, which no node needed: nothing is kept.
  await rotate(backend, { type: 'host', mode: 'manual', phase: 'init', gracePeriodMs: HOUR }, options, Date.now())
  await rotate(backend, { type: 'host', mode: 'manual', phase: 'rollback', gracePeriodMs: HOUR }, options, Date.now() + 1)
  t.same(await backend.list('/authorities/host-bridges/'), [], 'a rollback keeps no bridge')
  // Nor does a user CA rotation: host CAs are what servers are verified by.
  await manualRotation(backend, 'user', Date.now() + 2)
  t.same(await backend.list('/authorities/host-bridges/'), [], 'a user CA rotation keeps no bridge')
  const stillHeld = await heldBefore(backend)

  const before = Date.now()
  await manualRotation(backend, 'host', before + 10)
  const pinB = (await loadAuthority(backend, 'host')).authority.pins[0]
  const item = await backend.get(bridgeKey(pinA))
  t.ok(item, 'the manual step to standby kept a bridge out of the old CA')
  t.ok(item!.expires! >= before + options.bridgeTtlMs && item!.expires! <= Date.now() + options.bridgeTtlMs, 'for the lifetime plus the recovery window')
  const bridge = JSON.parse(item!.value) as TrustStatement
  t.same(bridge.host_ca_certs.map(caPin), [pinB, pinA], 'naming the new CA (signing) and the old one')
  t.same(
    bridge.signatures.map((s) => s.ca_pin),
    [pinB, pinA],
    'signed with both key sets',
  )
  t.equal(checkTrust(bridge, stillHeld), true, 'a node holding the set from before takes it by the old CA')
  t.throws(() => checkTrust(bridge, { ...stillHeld, hostCAPems: [bridge.host_ca_certs[0]], version: Number.MAX_SAFE_INTEGER }), 'but not over a newer set')

  // A second rotation, automatic this time: B→C, read as a chain from A.
  await rotate(backend, { type: 'host', mode: 'auto', gracePeriodMs: 4 }, options, Date.now() + 20)
  for (let i = 0; i < 3; i++) t.ok(await advanceAutomatic(backend, 'host', options, Date.now() + 30 + 10 * i), `automatic step ${i + 1}`)
  const pinC = (await loadAuthority(backend, 'host')).authority.pins[0]
  const chain = await readBridges(backend, pinA)
  t.same(
    chain.map((b) => b.host_ca_certs.map(caPin)),
    [
      [pinB, pinA],
      [pinC, pinB],
    ],
    'one bridge per rotation, A→B then B→C',
  )
  t.same(await readBridges(backend, pinC), [], 'none out of the CA in use')
}

t.test('SQLite', async (t) => {
  const backend = await openBackend({ type: 'sqlite', path: `${tempDir()}/warren.db` })
  t.teardown(() => backend.close())
  await bridgesIn(t, backend)
})

t.test('etcd', { skip: etcdUnavailable() }, async (t) => {
  const etcd = await EtcdServer.start()
  t.teardown(() => etcd.stop())
  const backend = await openBackend({ type: 'etcd', peers: [etcd.clientUrl], prefix: uniquePrefix('bridges') })
  t.teardown(() => backend.close())
  await bridgesIn(t, backend)
})
