import t from 'tap'
import { addressGroup } from './address-group.ts'

t.test('IPv4 per address, IPv6 per /64', async (t) => {
  t.equal(addressGroup('203.0.113.7'), '203.0.113.7')
  t.equal(addressGroup('::ffff:203.0.113.7'), '203.0.113.7', 'an IPv4-mapped address is its IPv4 address')
  t.equal(addressGroup('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64')
  t.equal(addressGroup('2001:db8:1:2::1'), '2001:db8:1:2::/64', 'two addresses of one /64 are one group')
  t.equal(addressGroup('2001:DB8:0001:0002::ffff'), '2001:db8:1:2::/64', 'whatever the spelling')
  t.equal(addressGroup('2001:db8::1'), '2001:db8:0:0::/64')
  t.equal(addressGroup('::1'), '0:0:0:0::/64')
  t.equal(addressGroup('fe80::1%eth0'), 'fe80:0:0:0::/64', 'a zone id is not part of the address')
  t.not(addressGroup('2001:db8:1:2::1'), addressGroup('2001:db8:1:3::1'), 'another /64 is another group')
})
