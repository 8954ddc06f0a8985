// What a node signs for the auth server: verified whatever order a proxy's parsing left the
// fields in, and not once anything in it changed.

import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { signAsNode, signingKeyOf } from './node-signature.ts'

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const fingerprint = createHash('sha256')
  .update(createPublicKey(privateKey).export({ type: 'spki', format: 'der' }))
  .digest('hex')

t.test('audit events: the signing key is known by its fingerprint, whatever the order of the fields', async (t) => {
  const events = [{ id: 'e-00000001', time: 1, type: 'exec', user: 'carol', command: 'uptime' }]
  const signature = signAsNode('h1', { kind: 'audit events', events }, privateKey)
  const reordered = [{ type: 'exec', command: 'uptime', user: 'carol', time: 1, id: 'e-00000001' }]
  t.equal(signingKeyOf('h1', { kind: 'audit events', events: reordered }, signature), fingerprint)
  t.equal(signingKeyOf('h1', { kind: 'audit events', events: [{ ...events[0], user: 'mallory' }] }, signature), undefined, 'a field changed')
  t.equal(signingKeyOf('h2', { kind: 'audit events', events }, signature), undefined, 'another host')
  t.equal(signingKeyOf('h1', { kind: 'audit events', events: [] }, signature), undefined, 'events left out')
  t.equal(signingKeyOf('h1', { kind: 'audit events', events }, { ...signature, public_key: 'not a key' }), undefined, 'a key that cannot be read')
})

t.test('recording chunks: offset, data and end are covered', async (t) => {
  const chunk = { session_id: 's1', offset: 0, data: 'aGVsbG8=', end: false }
  const signature = signAsNode('h1', { kind: 'recording chunk', chunk }, privateKey)
  t.equal(signingKeyOf('h1', { kind: 'recording chunk', chunk: { ...chunk } }, signature), fingerprint)
  t.equal(signingKeyOf('h1', { kind: 'recording chunk', chunk: { session_id: 's1', offset: 0, data: 'aGVsbG8=' } }, signature), fingerprint, 'end left out is end false')
  for (const changed of [{ offset: 5 }, { data: 'bW9yZQ==' }, { end: true }, { session_id: 's2' }]) {
    t.equal(signingKeyOf('h1', { kind: 'recording chunk', chunk: { ...chunk, ...changed } }, signature), undefined, `changed: ${Object.keys(changed)[0]}`)
  }
  t.equal(signingKeyOf('h1', { kind: 'audit events', events: [] }, signature), undefined, 'not a batch of events')
})
