import { randomUUID } from 'node:crypto'
import t from 'tap'
import { heldProxiesAlpn, listsHeldProxy, TUNNEL_ALPN } from './tunnel.ts'

t.test('held proxies ride in ALPN names of at most 255 bytes', async (t) => {
  const ids = Array.from({ length: 20 }, () => randomUUID())
  const names = heldProxiesAlpn(ids)
  t.ok(names.length > 1, `20 IDs need ${names.length} names`)
  for (const name of names) t.ok(Buffer.byteLength(name) <= 255, `${Buffer.byteLength(name)} bytes`)
  for (const id of ids) t.ok(listsHeldProxy([TUNNEL_ALPN, ...names], id), `${id} is listed`)
  t.notOk(listsHeldProxy([TUNNEL_ALPN, ...names], randomUUID()), 'another proxy is not')
  t.strictSame(heldProxiesAlpn([]), [], 'nothing held, no names')
})

t.test('only whole IDs match, and only in held names', async (t) => {
  const names = heldProxiesAlpn(['proxy-a', 'proxy-b'])
  t.strictSame(names, ['warren-held:proxy-a,proxy-b'])
  t.notOk(listsHeldProxy(names, 'proxy'), 'a prefix of a listed ID')
  t.notOk(listsHeldProxy(names, 'proxy-a,proxy-b'), 'two IDs at once')
  t.notOk(listsHeldProxy([TUNNEL_ALPN, 'proxy-a'], 'proxy-a'), 'an ALPN name that is not a held list')
  t.strictSame(heldProxiesAlpn(['', 'x,y', 'ok']), ['warren-held:ok'], 'IDs that cannot be listed are left out')
})
