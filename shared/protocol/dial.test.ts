import { PassThrough } from 'node:stream'
import t from 'tap'
import { parseDialReply, parseDialRequest, parseUserDial } from './dial.ts'
import { readFirstMessage } from './framing.ts'

t.test('dial requests name a service, and a port by name', async (t) => {
  t.same(parseDialRequest({ service: 'ssh', client: 'alice@10.0.0.1' }), { service: 'ssh', name: undefined, client: 'alice@10.0.0.1' })
  t.same(parseDialRequest({ service: 'port', name: 'web' }), { service: 'port', name: 'web', client: undefined })
  t.match(
    parseDialRequest({ service: 'ssh', user: 'alice', valid_from: 1_700_000_000_000 }),
    { user: 'alice', valid_from: 1_700_000_000_000 },
    'an SSH stream names the user the proxy judged',
  )
  t.throws(() => parseDialRequest({ service: 'ssh', valid_from: 'yesterday' }), { name: 'ProtocolError', field: 'valid_from' })
  t.throws(() => parseDialRequest({ service: 'vnc' }), {
    name: 'ProtocolError',
    messageType: 'dial request',
    field: 'service',
    message: 'dial request: field "service" must be ssh or port',
  })
  t.throws(() => parseDialRequest({ service: 'port', name: 7 }), { field: 'name', message: 'dial request: field "name" must be a string' })
  t.throws(() => parseDialRequest({}), { field: 'service', message: 'dial request: missing field "service"' })
  const certificate = 'ssh-ed25519-cert-v01@openssh.com AAAA'
  t.same(parseDialRequest({ service: 'port', name: 'web', certificate }), { service: 'port', name: 'web', client: undefined, certificate })
  t.throws(() => parseDialRequest({ service: 'port', name: 'web', certificate: 'A'.repeat(32 * 1024 + 1) }), { name: 'ProtocolError', field: 'certificate' })
})

t.test('a user names the node too', async (t) => {
  t.same(parseUserDial({ node: 'pi-1', service: 'ssh' }), { node: 'pi-1', service: 'ssh', name: undefined })
  const certificate = 'ssh-ed25519-cert-v01@openssh.com AAAA'
  t.same(parseUserDial({ node: 'pi-1', service: 'port', name: 'web', certificate }), { node: 'pi-1', service: 'port', name: 'web', certificate })
  t.throws(() => parseUserDial({ service: 'ssh' }), { messageType: 'user dial', field: 'node', message: 'the request: missing field "node"' })
})

t.test('a reply is ok, or a refusal with its reason', async (t) => {
  t.same(parseDialReply({ ok: true }), { ok: true })
  t.same(parseDialReply({ ok: false, error: 'no service "x" on this node' }), { ok: false, error: 'no service "x" on this node' })
  t.same(parseDialReply({ ok: false }), { ok: false, error: 'no reason given' })
  t.throws(() => parseDialReply({ ok: 'yes' }), { messageType: 'dial reply', field: 'ok', message: 'dial reply: field "ok" must be true or false' })
})

t.test('the first line is read as a request and the bytes after it are left for the service', async (t) => {
  const stream = new PassThrough()
  stream.write('{"service":"port","name":"web"}\nGET / HTTP/1.1\r\n')
  t.same(await readFirstMessage(stream, parseDialRequest), { service: 'port', name: 'web', client: undefined })
  t.equal((stream.read() as Buffer).toString(), 'GET / HTTP/1.1\r\n')

  const bad = new PassThrough()
  bad.write('{"service":"telnet"}\n')
  await t.rejects(readFirstMessage(bad, parseDialRequest), { name: 'ProtocolError', field: 'service' })
})
