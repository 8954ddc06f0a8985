import { once } from 'node:events'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { type AgentMessage, parseAgentMessage, parseProxyMessage } from './control.ts'
import { ProtocolError } from './errors.ts'
import { readMessages } from './framing.ts'
import { MAX_RENEWAL_SPREAD_MS, MAX_RETURN_SPREAD_MS } from './tunnel.ts'

t.test('each message an agent sends is read as its type', async (t) => {
  t.same(parseAgentMessage({ type: 'hello', version: 1, agent_version: '1.2.3', labels: { env: 'lab' }, services: ['ssh', 'web'], assigned_labels: true, refusals: true }), {
    type: 'hello',
    version: 1,
    agent_version: '1.2.3',
    labels: { labels: { env: 'lab' } },
    services: ['ssh', 'web'],
    assigned_labels: true,
    refusals: true,
  })
  t.match(parseAgentMessage({ type: 'hello' }), { assigned_labels: false, refusals: false }, 'an agent from before assigned labels and refusals takes neither')
  t.same(parseAgentMessage({ type: 'heartbeat', labels: { env: 'prod' } }), { type: 'heartbeat', labels: { labels: { env: 'prod' } } })
  t.same(parseAgentMessage({ type: 'renew' }), { type: 'renew' })
  t.same(parseAgentMessage({ type: 'cert', tls_cert: 'PEM' }), { type: 'cert', tls_cert: 'PEM' })
  t.same(
    parseAgentMessage({ type: 'heartbeat', labels: { 'bad key': 'v' } }),
    { type: 'heartbeat', labels: { refused: 'label "bad key" is not a valid label name (letters, digits and / . _ : * -)' } },
    'labels the rules refuse are reported, not fatal',
  )
  t.same(parseAgentMessage({ type: 'hello', later_field: 1 }).type, 'hello', 'fields it does not know are left aside')
  t.same(
    parseAgentMessage({ type: 'audit', batch: 'b1', events: [{ id: 'event-0001', time: 5, type: 'exec', command: 'uptime', node: 'forged' }] }),
    { type: 'audit', batch: 'b1', events: [{ id: 'event-0001', time: 5, type: 'exec', fields: { command: 'uptime' } }] },
    "audit events, without the node's name for itself (the auth server decides it)",
  )
  t.throws(() => parseAgentMessage({ type: 'audit', batch: 'b1', events: [{ id: 'x', time: 5, type: 'exec' }] }), /events\[0\]\.id/)
  t.throws(() => parseAgentMessage({ type: 'audit', batch: 'b1', events: [{ id: 'event-0001', time: 5, type: 'login' }] }), /events\[0\]\.type/, 'only the events a node reports')
})

t.test('each message a proxy sends is read as its type', async (t) => {
  t.same(
    parseProxyMessage({ type: 'welcome', proxy_id: 'p1', cluster_name: 'c' }),
    { type: 'welcome', proxy_id: 'p1', cluster_name: 'c', audit: false, skipped_recordings: false },
    'a proxy that does not say it carries audit events (or recording.skipped ones) does not',
  )
  t.match(parseProxyMessage({ type: 'welcome', proxy_id: 'p1', cluster_name: 'c', audit: true, skipped_recordings: true }), { skipped_recordings: true })
  t.match(parseProxyMessage({ type: 'welcome', proxy_id: 'p1', cluster_name: 'c', audit: true }), { audit: true })
  t.same(parseProxyMessage({ type: 'audit_stored', batch: 'b1', stored: 2 }), { type: 'audit_stored', batch: 'b1', stored: 2 })
  t.same(parseProxyMessage({ type: 'audit_failed', batch: 'b1', error: 'away' }), { type: 'audit_failed', batch: 'b1', error: 'away', refused: false })
  t.same(parseProxyMessage({ type: 'proxies', ids: ['a', 'b'], spread_ms: 5000 }), { type: 'proxies', ids: ['a', 'b'], spread_ms: 5000 })
  t.same(
    parseProxyMessage({ type: 'proxies', ids: [], spread_ms: MAX_RETURN_SPREAD_MS + 1 }),
    { type: 'proxies', ids: [], spread_ms: undefined },
    'a spread longer than agents accept is ignored',
  )
  t.same(parseProxyMessage({ type: 'ca', host_ca_certs: ['h'], user_ca_ssh_keys: ['u'] }), { type: 'ca', host_ca_certs: ['h'], user_ca_ssh_keys: ['u'] })
  t.match(parseProxyMessage({ type: 'ca', host_ca_certs: ['h'], user_ca_ssh_keys: [], spread_ms: 2000 }), { type: 'ca', spread_ms: 2000 })
  t.match(
    parseProxyMessage({ type: 'ca', host_ca_certs: ['h'], user_ca_ssh_keys: [], spread_ms: MAX_RENEWAL_SPREAD_MS + 1 }),
    { type: 'ca', spread_ms: undefined },
    'a renewal spread longer than agents accept is ignored',
  )
  t.same(parseProxyMessage({ type: 'certs', tls_cert: 't', ssh_cert: 's', host_ca_certs: ['h'], user_ca_ssh_keys: ['u'] }).type, 'certs')
  t.same(parseProxyMessage({ type: 'renew_failed', error: 'not due' }), { type: 'renew_failed', error: 'not due' })
  t.same(parseProxyMessage({ type: 'refused', reason: 'rate_limited', retry_after_ms: 800 }), { type: 'refused', reason: 'rate_limited', retry_after_ms: 800 })
  t.same(parseProxyMessage({ type: 'refused', reason: 'unregistered', retry_after_ms: -1 }), { type: 'refused', reason: 'unregistered' }, 'a wait that is none is left out')
})

t.test('unknown and malformed messages are refused with the type and field named', async (t) => {
  const refusal = (parse: () => unknown) => {
    try {
      parse()
    } catch (error) {
      if (error instanceof ProtocolError) return { messageType: error.messageType, field: error.field, message: error.message }
      throw error
    }
    return undefined
  }
  t.same(
    refusal(() => parseAgentMessage({ type: 'bogus' })),
    { messageType: 'bogus', field: 'type', message: 'unknown control message type "bogus"' },
  )
  t.same(
    refusal(() => parseAgentMessage({ labels: {} })),
    { messageType: 'control message', field: 'type', message: 'unknown control message type null' },
  )
  t.same(
    refusal(() => parseAgentMessage({ type: 'constructor' })),
    { messageType: 'constructor', field: 'type', message: 'unknown control message type "constructor"' },
    'no inherited names',
  )
  t.same(
    refusal(() => parseProxyMessage({ type: 'hello' })),
    { messageType: 'hello', field: 'type', message: 'unknown control message type "hello"' },
    "an agent's message is not a proxy's",
  )
  t.same(
    refusal(() => parseAgentMessage({ type: 'cert' })),
    { messageType: 'cert', field: 'tls_cert', message: 'control message "cert": missing field "tls_cert"' },
  )
  t.same(
    refusal(() => parseAgentMessage({ type: 'cert', tls_cert: 42 })),
    { messageType: 'cert', field: 'tls_cert', message: 'control message "cert": field "tls_cert" must be a string' },
  )
  t.same(
    refusal(() => parseAgentMessage({ type: 'hello', services: ['ssh', 3] })),
    { messageType: 'hello', field: 'services', message: 'control message "hello": field "services" must be a list of at most 1024 strings' },
  )
  t.same(
    refusal(() => parseProxyMessage({ type: 'proxies', ids: 'p1' })),
    { messageType: 'proxies', field: 'ids', message: 'control message "proxies": field "ids" must be a list of at most 4096 strings' },
  )
  t.same(
    refusal(() => parseProxyMessage({ type: 'welcome', proxy_id: 'p' })),
    { messageType: 'welcome', field: 'cluster_name', message: 'control message "welcome": missing field "cluster_name"' },
  )
  t.same(
    refusal(() => parseProxyMessage(['welcome'])),
    { messageType: 'control message', field: undefined, message: 'a control message must be a JSON object' },
  )
})

t.test('a stream that carries an unknown message is destroyed with the refusal, and nothing after it is read', async (t) => {
  const stream = new PassThrough()
  const read: AgentMessage[] = []
  readMessages(stream, parseAgentMessage, (message) => read.push(message))
  const failed = once(stream, 'error')
  stream.write('{"type":"renew"}\n{"type":"shutdown"}\n{"type":"renew"}\n')
  const [error] = await failed
  t.ok(error instanceof ProtocolError)
  t.equal(error.messageType, 'shutdown')
  t.same(read, [{ type: 'renew' }], 'the message before it was read, the one after it was not')
  t.ok(stream.destroyed)
})

t.test('a line that is not a JSON object is refused as such', async (t) => {
  for (const line of ['not json', '[1,2]', '"text"']) {
    const stream = new PassThrough()
    readMessages(stream, parseAgentMessage, () => t.fail('nothing is read'))
    const failed = once(stream, 'error')
    stream.write(line + '\n')
    const [error] = await failed
    t.match(error, { name: 'ProtocolError', message: /a control message is not (valid JSON|a JSON object)/ }, line)
  }
})

t.test('lines come whole however the stream cuts them, and a line past 64 KiB is refused unfinished', async (t) => {
  const stream = new PassThrough()
  const read: AgentMessage[] = []
  readMessages(stream, parseAgentMessage, (message) => read.push(message))
  const text = '{"type":"renew"}\n{"type":"heartbeat","labels":{"site":"lab"}}\n{"type":"renew"}\n'
  // A byte per chunk, as a node sending a frame per byte would; then all three lines in one.
  for (const byte of text) stream.write(byte)
  stream.write(text)
  await new Promise((resolve) => setImmediate(resolve))
  t.same(
    read.map((message) => message.type),
    ['renew', 'heartbeat', 'renew', 'renew', 'heartbeat', 'renew'],
  )

  const long = new PassThrough()
  readMessages(long, parseAgentMessage, () => t.fail('nothing is read'))
  const failed = once(long, 'error')
  const piece = `{"type":"heartbeat","labels":{"pad":"${'a'.repeat(1024)}`
  for (let i = 0; i < 70 && !long.destroyed; i++) long.write(i === 0 ? piece : 'a'.repeat(1024))
  const [error] = await failed
  t.match(error, { name: 'ProtocolError', message: 'a control message is too long' })
})
