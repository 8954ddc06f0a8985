import t from 'tap'
import { joinHostPort, parseHostPort, splitHostPort } from './address.ts'

t.test('parseHostPort', async (t) => {
  t.same(parseHostPort('host', 3025), { host: 'host', port: 3025 })
  t.same(parseHostPort('host:3080', 3025), { host: 'host', port: 3080 })
  t.same(parseHostPort('[::1]:3025', 1), { host: '::1', port: 3025 })
  t.same(parseHostPort('[::1]', 3025), { host: '::1', port: 3025 })
  t.same(parseHostPort('::1', 3025), { host: '::1', port: 3025 })
  t.same(parseHostPort('1.2.3.4:80', 3025), { host: '1.2.3.4', port: 80 })
  t.same(parseHostPort('127.0.0.1:0', 3025), { host: '127.0.0.1', port: 0 }, 'port 0 asks for a free port')
  for (const bad of ['host:', 'host:abc', 'host:65536', 'host:-1', ':3025', 'https://host:3025', '[::1', '[::1]x', 'a:b:c', '']) {
    t.throws(() => parseHostPort(bad, 3025), { message: /^invalid (address|port) / }, bad)
  }
  t.throws(() => parseHostPort('host:abc', 1), { message: 'invalid port "abc" in "host:abc": use a number from 0 to 65535' })
})

t.test('splitHostPort leaves an unwritten port out, joinHostPort brackets IPv6', async (t) => {
  t.same(splitHostPort('auth.example.com'), { host: 'auth.example.com' })
  t.same(splitHostPort('[fd00::1]:3024'), { host: 'fd00::1', port: 3024 })
  t.equal(joinHostPort('fd00::1', 3024), '[fd00::1]:3024')
  t.equal(joinHostPort('10.0.0.1', 3024), '10.0.0.1:3024')
  t.same(splitHostPort(joinHostPort('::1', 22)), { host: '::1', port: 22 })
})
