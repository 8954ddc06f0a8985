// A join whose answer never reaches the device, with real processes: a relay between the
// device and a real auth server lets the join through and cuts the connection before any byte
// of its answer comes back. The device (`warren start`) tries again with the same keys and ends
// joined as the host the auth server registered the first time, and one host carries its
// name. Nobody else gets that host: another device with the same token and its own keys, the
// device's public keys with signatures made by other keys, and the lost request sent again
// are all refused and register nothing.

import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { SqliteBackend } from '../auth/backend/sqlite.ts'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { generateJoinKeys, joinCluster, signedJoinBody } from '../shared/join.ts'
import type { PresentNode } from '../shared/protocol/admin.ts'
import { trustedSealingKey } from '../shared/sealed-login.ts'
import { AuthProcess, startNode, tempDir, waitForNode } from './helpers/cluster.ts'

t.setTimeout(120_000)

/**
 * A TCP relay to `target` that passes everything, except the answer to the join that registers
 * the node name it was armed for. The auth server is behind TLS, so the relay cannot read where
 * that answer starts; it asks the backend instead. Every chunk from the server waits, in order,
 * until the relay knows whether the name is registered; the first one that finds it registered
 * is the start of the join's answer, since the auth server commits the registration before it
 * writes a byte of the answer, and sends nothing unasked on a connection once its handshake is
 * over. The relay then closes both connections without passing that chunk on: the device sent
 * its join and the cluster registered it, but the device sees only the connection drop.
 */
class LosingRelay {
  address = ''
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  readonly #holder: (nodename: string) => Promise<string | undefined>
  #armed?: { nodename: string; lost: (hostId: string) => void }

  constructor(target: string, holder: (nodename: string) => Promise<string | undefined>) {
    this.#holder = holder
    const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))]
    this.#server = createServer((device) => {
      const upstream = connect(port, host)
      for (const socket of [device, upstream]) {
        this.#sockets.add(socket)
        socket.on('close', () => this.#sockets.delete(socket))
        socket.on('error', () => undefined)
      }
      const cut = () => {
        device.destroy()
        upstream.destroy()
      }
      device.on('data', (chunk) => upstream.write(chunk))
      device.on('close', () => upstream.destroy())
      // The server's chunks, one after the other: each is judged before the next.
      let queue = Promise.resolve()
      upstream.on('data', (chunk) => {
        queue = queue.then(async () => {
          if (device.destroyed) return
          const armed = this.#armed
          const hostId = armed && (await this.#holder(armed.nodename))
          if (armed && hostId && this.#armed === armed) {
            this.#armed = undefined
            cut()
            armed.lost(hostId)
            return
          }
          device.write(chunk)
        })
      })
      upstream.on('close', () => void queue.then(() => device.destroy()))
    })
  }

  async listen(): Promise<this> {
    this.#server.listen(0, '127.0.0.1')
    await once(this.#server, 'listening')
    this.address = `127.0.0.1:${(this.#server.address() as AddressInfo).port}`
    return this
  }

  /** Loses the answer to the next join that registers `nodename`; resolves with the host ID it registered. */
  loseJoinAnswer(nodename: string): Promise<string> {
    return new Promise((lost) => {
      this.#armed = { nodename, lost }
    })
  }

  close(): void {
    for (const socket of this.#sockets) socket.destroy()
    this.#server.close()
  }
}

const auth = new AuthProcess()
let backend: SqliteBackend
let relay: LosingRelay
let pin = ''
let caPems: string[] = []

t.before(async () => {
  await auth.start()
  pin = await auth.pin()
  caPems = JSON.parse(readFileSync(auth.identityPath, 'utf8')).host_ca_certs
  backend = SqliteBackend.open(join(auth.dataDir, 'backend.db'))
  relay = await new LosingRelay(auth.address, async (nodename) => {
    const claim = await backend.get(`/nodenames/${nodename}`)
    return claim && (JSON.parse(claim.value) as { hostId: string }).hostId
  }).listen()
})
t.teardown(async () => {
  relay?.close()
  await backend?.close()
  await auth.stop()
})

/** The hosts registered under `nodename`, by host ID. */
const registered = async (nodename: string) =>
  (await backend.list('/nodes/'))
    .map((item) => JSON.parse(item.value) as { hostId: string; nodename: string })
    .filter((r) => r.nodename === nodename)
    .map((r) => r.hostId)

const listed = async () => JSON.parse((await auth.ctl(['nodes', 'ls', '--format=json'])).stdout) as PresentNode[]

/** The join events audited for `nodename`. */
const joinEvents = async (nodename: string) =>
  (JSON.parse((await auth.ctl(['audit', 'ls', '--type=join', '--format=json'])).stdout) as Record<string, unknown>[]).filter((event) => event.node === nodename)

for (const kind of ['single-use', 'multi-use'] as const) {
  t.test(`warren start, its join's answer lost (a ${kind} token): it ends joined as the host registered the first time`, async (t) => {
    const nodename = `pi-lost-${kind}`
    const token = await auth.token(kind === 'single-use' ? ['nodes', 'add', '--single-use'] : ['nodes', 'add'])
    const lost = relay.loseJoinAnswer(nodename)
    const dataDir = tempDir()
    const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${relay.address}`, `--token=${token}`, `--ca-pin=${pin}`, `--nodename=${nodename}`])
    t.teardown(() => node.stop())
    const firstHostId = await lost
    t.pass(`the answer to the join that registered ${firstHostId} was lost`)
    await waitForNode(auth, nodename)

    t.equal(loadIdentity(dataDir)?.hostId, firstHostId, 'the device holds the identity of the host registered the first time')
    const nodes = (await listed()).filter((n) => n.nodename === nodename)
    t.same(
      nodes.map((n) => n.host_id),
      [firstHostId],
      'nodes ls --format=json shows it under that host ID',
    )
    t.same(await registered(nodename), [firstHostId], 'one host registered for the name')
    t.match(
      node.stderr,
      /the join's outcome is unknown \(cannot reach 127\.0\.0\.1:\d+: ECONNRESET: [^)]*\): trying it again with the same keys in \d+s/,
      'the device saw the connection drop, and tried again',
    )
    t.same(
      (await joinEvents(nodename)).map((event) => [event.accepted, event.host_id, event.repeated]),
      [
        [true, firstHostId, undefined],
        [true, firstHostId, true],
      ],
      'audited as two joins of one host, the second a repeat',
    )
    t.notMatch(node.stderr + auth.daemon.stderr, token, 'the token appears in no log')
  })
}

t.test('after a lost answer, only the device with the keys gets its host; nobody else, and nothing is registered', async (t) => {
  const nodename = 'pi-victim'
  const token = await auth.token(['nodes', 'add', '--single-use'])
  const keys = generateJoinKeys()
  const fields = { token, nodename, roles: ['node'] }

  // The device's join, through the relay, which loses its answer.
  const lost = relay.loseJoinAnswer(nodename)
  const client = new ApiClient({ server: relay.address, caPems })
  t.teardown(() => client.close())
  const challenge = await client.call('POST /v1/join/challenge')
  const sealingKey = trustedSealingKey('test-cluster', challenge.sealing_key, caPems)!
  const lostBody = signedJoinBody('test-cluster', challenge.nonce, fields, keys, sealingKey)
  await t.rejects(client.call('POST /v1/join', { body: lostBody }), /cannot reach 127\.0\.0\.1:\d+: ECONNRESET/, 'the device sees the connection drop')
  const hostId = await lost
  t.same(await registered(nodename), [hostId], 'the cluster registered it')

  const direct = new ApiClient({ server: auth.address, caPems })
  t.teardown(() => direct.close())
  const statusOf = (call: Promise<unknown>) =>
    call.then(
      () => 200,
      (error) => (error instanceof ApiError ? `${error.status} ${error.message}` : String(error)),
    )

  for (const name of [nodename, 'pi-thief']) {
    await t.rejects(
      joinCluster({ authServer: auth.address, token, caPins: [pin], nodename: name, roles: ['node'], warn: () => {} }),
      /token expired or not found/,
      `a second device with the token and its own keys, as ${name}: refused`,
    )
  }
  // The device's public keys (a proxy on the way saw them), with signatures by other keys.
  const thief = generateJoinKeys()
  const forged = {
    ...signedJoinBody('test-cluster', (await direct.call('POST /v1/join/challenge')).nonce, fields, thief),
    tls_public_key: lostBody.tls_public_key,
    ssh_public_key: lostBody.ssh_public_key,
  }
  t.match(
    await statusOf(direct.call('POST /v1/join', { body: forged })),
    /^403 .*field "tls_signature" is not a signature by the key in "tls_public_key"/,
    'the right public keys, signatures it cannot make: refused',
  )
  t.match(await statusOf(direct.call('POST /v1/join', { body: lostBody })), /^403 .*the join challenge was already used/, 'the lost request sent again: refused')
  t.same(await registered(nodename), [hostId], 'still the one host')
  t.same(await registered('pi-thief'), [], 'and nothing for the thief')

  // The device tries again, with its keys and a new challenge.
  const identity = await joinCluster({ authServer: relay.address, token, caPins: [pin], nodename, roles: ['node'], warn: () => {}, keys })
  t.equal(identity.hostId, hostId, 'the device gets the host it registered')
  t.same(await registered(nodename), [hostId], 'and it is still the one host')
})
