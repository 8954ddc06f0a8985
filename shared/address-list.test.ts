import t from 'tap'
import { AddressList } from './address-list.ts'

t.test('IPs and CIDRs, both families, and IPv4-mapped peers', async (t) => {
  const trusted = new AddressList(['10.0.0.0/8', '192.168.1.7', 'fd00::/8', '2001:db8::1', ' 172.16.0.0/12 '], 'trusted address')
  for (const address of ['10.0.0.1', '10.255.255.255', '192.168.1.7', '172.31.0.1', 'fd12:3456::1', '2001:db8::1', '::ffff:10.1.2.3', '::ffff:192.168.1.7']) {
    t.ok(trusted.has(address), `${address} is trusted`)
  }
  for (const address of ['11.0.0.1', '192.168.1.8', '172.32.0.1', 'fe80::1', '2001:db8::2', '::ffff:11.0.0.1', '::1', '127.0.0.1', '', 'example.com']) {
    t.notOk(trusted.has(address), `${address || '(empty)'} is not trusted`)
  }
  t.ok(new AddressList(['fe80::/10'], 'trusted address').has('fe80::1%eth0'), 'a zone id does not hide the address')
})

t.test('an empty list trusts nobody', async (t) => {
  const trusted = new AddressList([], 'trusted address')
  t.notOk(trusted.has('127.0.0.1'))
  t.notOk(trusted.has('::1'))
})

t.test('invalid entries are refused at construction', async (t) => {
  for (const entry of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0', 'lb.example.com', '10.0.0.0/-1', '10.0.0.0/0x8', 'fe80::1%eth0', '']) {
    t.throws(() => new AddressList([entry], 'trusted address'), { message: /^invalid trusted address/ }, JSON.stringify(entry))
  }
})
