import t from 'tap'
import { formatIPv4, formatIPv6, ipToBytes } from './ip-bytes.ts'

t.test('IPv6 text follows RFC 5952 and survives a round trip', async (t) => {
  const cases: Array<[string, string]> = [
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group stays
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run is shortened
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // on a tie, the first
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['::ffff:a01:203', '::ffff:10.1.2.3'], // IPv4-mapped prints as Node's remoteAddress does
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
  ]
  for (const [input, expected] of cases) {
    const bytes = ipToBytes(input)
    t.equal(bytes.length, 16)
    t.equal(formatIPv6(bytes), expected, input)
    t.same(ipToBytes(expected), bytes, `${expected} parses back`)
  }
})

t.test('IPv4', async (t) => {
  t.same([...ipToBytes('192.168.0.255')], [192, 168, 0, 255])
  t.equal(formatIPv4(Buffer.from([10, 0, 0, 1])), '10.0.0.1')
})

t.test('anything else is refused', async (t) => {
  for (const input of ['', 'example.com', '1.2.3', '256.0.0.1', '1::2::3', 'fe80::1%eth0']) {
    t.throws(() => ipToBytes(input), TypeError, JSON.stringify(input))
  }
})
