// What a proxy carries in a node's name, judged against the node's registered key: taken
// unsigned only until the host's first signed batch, and signed only by that key.

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
  const nodes = {
    lookup: async (hostId: string) => (record && hostId === record.hostId ? { ...record } : undefined),
    recordSignsRelayed: async () => {
      if (record) record.signsRelayed = true
    },
  }
  return { nodes } as unknown as AuthContext
}

t.test('unsigned until the first signed batch, then only signed by the registered key', async (t) => {
  const record: NodeRecord = { hostId: 'h1', nodename: 'pi-1', roles: ['node'], joinedAt: 0, tlsKeySha256: fingerprint }
  const context = contextWith(record)
  t.equal((await judgeRelayed(context, 'h1', content, undefined)).nodename, 'pi-1', 'a node of an earlier version: taken')
  await t.rejects(judgeRelayed(context, 'h1', content, signAsNode('h1', content, otherKey)), /not signed by the key registered for host h1/, 'another key: refused')
  t.notOk(record.signsRelayed, 'a refused signature teaches nothing')
  await judgeRelayed(context, 'h1', content, signAsNode('h1', content, nodeKey))
  t.ok(record.signsRelayed, "the host's own signature is taken, and remembered")
  await t.rejects(judgeRelayed(context, 'h1', content, undefined), /not signed by host h1, which signs/, 'unsigned from then on: refused')
  await t.rejects(judgeRelayed(context, 'h2', content, undefined), /host h2 is not registered/, 'a host not registered')
})

t.test('a host registered before keys were recorded: any valid signature is taken, and teaches nothing', async (t) => {
  const record: NodeRecord = { hostId: 'h1', nodename: 'pi-1', roles: ['node'], joinedAt: 0 }
  const context = contextWith(record)
  await judgeRelayed(context, 'h1', content, signAsNode('h1', content, otherKey))
  t.notOk(record.signsRelayed)
  await t.rejects(judgeRelayed(context, 'h1', { kind: 'audit events', events: [] }, signAsNode('h1', content, nodeKey)), /not signed/, 'a signature over other content: refused')
})
