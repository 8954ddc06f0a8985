import t from 'tap'
import { ProtocolError } from '../shared/protocol/errors.ts'
import { directNodes, serviceAddress } from './direct-nodes.ts'
import type { Presence } from './nodes.ts'

t.test('the address a direct node is dialled at', async (t) => {
  t.equal(serviceAddress('10.0.0.5', ':3022'), '10.0.0.5:3022', 'its port on the address the heartbeat came from')
  t.equal(serviceAddress('fd00::5', ':4022'), '[fd00::5]:4022', 'an IPv6 address in brackets')
  t.equal(serviceAddress('10.0.0.5', 'pi.example.com:4022'), 'pi.example.com:4022', 'ssh_service.public_addr wins')
  t.equal(serviceAddress('10.0.0.5', '[fd00::9]:22'), '[fd00::9]:22')
  t.equal(serviceAddress('10.0.0.5', undefined), '10.0.0.5', 'an older node that reports nothing: its IP alone')
  for (const bad of [':0', ':65536', ':x', ':', 'pi.example.com', 'pi:0', 'http://pi:1', 'a b:1']) {
    let refusal: unknown
    try {
      serviceAddress('10.0.0.5', bad)
    } catch (error) {
      refusal = error
    }
    t.ok(refusal instanceof ProtocolError && refusal.field === 'service_addr', `${JSON.stringify(bad)} is refused, naming the field`)
  }
})

t.test("a node reports no address where the proxies would dial their own host's or the network's services", async (t) => {
  const refusal = (seenFrom: string, reported: string) => {
    try {
      serviceAddress(seenFrom, reported)
    } catch (error) {
      return error instanceof ProtocolError && error.field === 'service_addr' ? error.message : `not a ProtocolError: ${error}`
    }
    return undefined
  }
  for (const reported of ['169.254.169.254:80', '[fe80::1]:22', '0.0.0.0:22', '224.0.0.1:22', '[::]:22', '[ff02::1]:22', '[::ffff:169.254.169.254]:80']) {
    t.match(refusal('10.0.0.5', reported), /link-local, multicast or unspecified address/, reported)
  }
  t.match(refusal('10.0.0.5', '127.0.0.1:3025'), /127\.0\.0\.1 is a loopback address, and the heartbeat comes from 10\.0\.0\.5/, "another host's loopback")
  t.match(refusal('10.0.0.5', '[::1]:3025'), /loopback/)
  t.equal(refusal('127.0.0.1', '127.0.0.1:3022'), undefined, "a node on the auth server's host")
  t.equal(refusal('::1', '[::1]:3022'), undefined)
  t.equal(refusal('10.0.0.5', '10.0.0.9:3022'), undefined, 'another address of the network')
})

t.test('proxies are told the nodes without a tunnel, with their labels', async (t) => {
  const presence = (hostId: string, tunnel: boolean, addr: string): Presence => ({
    hostId,
    nodename: `n-${hostId}`,
    roles: ['node'],
    addr,
    tunnel,
    labels: { env: 'lab' },
    lastSeen: 0,
  })
  t.same(directNodes([presence('a', false, '10.0.0.5:3022'), presence('b', true, '203.0.113.9'), presence('c', false, '')]), [
    { host_id: 'a', nodename: 'n-a', addr: '10.0.0.5:3022', labels: { env: 'lab' } },
  ])
})
