// What a proxy carries in a node's name, judged against the node's registered key: taken
// only signed by that key, from the first batch on.

import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { signAsNode } from '../shared/node-signature.ts'
import type { AuthContext } from './api/context.ts'
import type { NodeRecord } from './nodes.ts'
import { judgeRelayed } from './relayed-by-proxy.ts'

const nodeKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
const fingerprint = createHash('sha256')
  .update(createPublicKey(nodeKey).export({ type: 'spki', format: 'der' }))
  .digest('hex')
const events = [{ id: 'e-00000001', time: 1, type: 'exec', command: 'uptime' }]
const content = { kind: 'audit events' as const, events }

/** A registry of one host, as the auth server's node directory answers for it. */
function contextWith(record: NodeRecord | undefined): AuthContext {
  const nodes = { lookup: async (hostId: string) => (record && hostId === record.hostId ? { ...record } : undefined) }
  return { nodes } as unknown as AuthContext
}

t.test("only the registered key's signature is taken, from the first batch on", async (t) => {
  const context = contextWith({ hostId: 'h1', nodename: 'pi-1', roles: ['node'], joinedAt: 0, tlsKeySha256: fingerprint })
  await t.rejects(judgeRelayed(context, 'h1', content, undefined), /not signed by host h1/, 'unsigned, although the host never sent anything: refused')
  await t.rejects(judgeRelayed(context, 'h1', content, signAsNode('h1', content, otherKey)), /not signed by the key registered for host h1/, 'another key: refused')
  await t.rejects(judgeRelayed(context, 'h1', { kind: 'audit events', events: [] }, signAsNode('h1', content, nodeKey)), /not signed/, 'a signature over other content: refused')
  t.equal((await judgeRelayed(context, 'h1', content, signAsNode('h1', content, nodeKey))).nodename, 'pi-1', "the host's own signature: taken")
  await t.rejects(judgeRelayed(context, 'h2', content, signAsNode('h2', content, nodeKey)), /host h2 is not registered/, 'a host not registered')
})

t.test('a host registered without its key: no signature is taken', async (t) => {
  const context = contextWith({ hostId: 'h1', nodename: 'pi-1', roles: ['node'], joinedAt: 0 })
  await t.rejects(judgeRelayed(context, 'h1', content, signAsNode('h1', content, otherKey)), /not signed by the key registered/)
  await t.rejects(judgeRelayed(context, 'h1', content, signAsNode('h1', content, nodeKey)), /not signed by the key registered/)
})
