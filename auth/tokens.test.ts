import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { SqliteBackend } from './backend/sqlite.ts'
import { hashToken, parseStaticToken, type StaticTokenSpec, TokenRefusal, TokenService } from './tokens.ts'

function setup(t: Test, statics: StaticTokenSpec[] = []) {
  let now = 1_000_000
  const dir = t.testdir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  return { dir, backend, service: new TokenService(backend, statics, () => now), advance: (ms: number) => (now += ms) }
}

t.test('only a hash of the token is stored', async (t) => {
  const { dir, backend, service } = setup(t)
  const { value, record } = await service.add({ roles: ['node'], ttlMs: 60_000 })
  t.match(value, /^[0-9a-f]{32}$/)
  t.equal(record.id, hashToken(value).toString('hex').slice(0, 12))
  await backend.close()
  const bytes = readdirSync(dir)
    .map((f) => readFileSync(join(dir, f)).toString('latin1'))
    .join('')
  t.notOk(bytes.includes(value), 'the token value is nowhere in the database files')
  t.ok(bytes.includes(hashToken(value).toString('hex')), 'its hash is')
})

t.test('validation: roles, expiry, single use', async (t) => {
  const { service, advance } = setup(t)
  const { value } = await service.add({ roles: ['node'], ttlMs: 60_000 })
  t.equal((await service.validate(value, ['node'])).record.roles[0], 'node')
  await t.rejects(service.validate(value, ['proxy']), new TokenRefusal('the token does not allow "proxy" role'))
  await t.rejects(service.validate('x'.repeat(32), ['node']), new TokenRefusal('token expired or not found'))
  advance(60_001)
  await t.rejects(service.validate(value, ['node']), new TokenRefusal('token expired or not found'))

  const once = await service.add({ roles: ['node'], ttlMs: 60_000, singleUse: true })
  const valid = await service.validate(once.value, ['node'])
  t.equal(valid.consume.operations.length, 1, 'a single-use token comes with its consuming delete')
})

t.test('static tokens validate, list without expiry and cannot be removed', async (t) => {
  const { service } = setup(t, [{ roles: ['node', 'proxy'], value: 'static-value-0123456789' }])
  t.ok(await service.validate('static-value-0123456789', ['proxy']))
  const [listed] = await service.list()
  t.equal(listed.static, true)
  t.equal(listed.expires, undefined)
  await t.rejects(service.remove('static-value-0123456789'), /static token/)
})

t.test('parseStaticToken', async (t) => {
  t.same(
    parseStaticToken('proxy,node:abc-0123456789abcdef', (v) => v),
    { roles: ['proxy', 'node'], value: 'abc-0123456789abcdef' },
  )
  t.same(
    parseStaticToken('auth:/path', (v) => (v === '/path' ? 'from-file-0123456789' : v)),
    { roles: ['auth'], value: 'from-file-0123456789' },
  )
  t.throws(() => parseStaticToken('node:abc', (v) => v), /^the token is shorter than 16 characters/)
  t.throws(() => parseStaticToken('node:/path', () => 'short'), /^the token in \/path is shorter than 16 characters/)
  t.throws(() => parseStaticToken('noroles', (v) => v), /must look like/)
  t.throws(() => parseStaticToken('wizard:abc', (v) => v), /unknown role "wizard"/)
  t.same(
    parseStaticToken({ roles: ['node'], token: '/path', labels: { env: 'prod' } }, (v) => (v === '/path' ? 'from-file-0123456789' : v)),
    { roles: ['node'], value: 'from-file-0123456789', labels: { env: 'prod' } },
    'the long form, with the labels it assigns',
  )
  t.same(
    parseStaticToken({ roles: ['proxy'], token: 'abc-0123456789abcdef', labels: {} }, (v) => v),
    { roles: ['proxy'], value: 'abc-0123456789abcdef' },
  )
  t.throws(() => parseStaticToken({ roles: ['proxy'], token: 'abc-0123456789abcdef', labels: { env: 'prod' } }, (v) => v), /roles must include node/)
  t.throws(() => parseStaticToken({ roles: ['node'], token: 'abc', labels: {} }, (v) => v), /^the token is shorter than 16 characters/)
})

t.test("a static token's labels come with the record a join reads", async (t) => {
  const { service } = setup(t, [{ roles: ['node'], value: 'static-value-0123456789', labels: { env: 'prod' } }])
  t.same((await service.validate('static-value-0123456789', ['node'])).record.labels, { env: 'prod' })
  t.same((await service.list())[0].labels, { env: 'prod' }, 'and tokens ls shows them')
})

t.test('tokens chosen by the user are checked', async (t) => {
  const { service } = setup(t)
  await t.rejects(service.add({ roles: ['node'], ttlMs: 1000, value: 'short' }), /at least 16/)
  await service.add({ roles: ['node'], ttlMs: 1000, value: 'a-long-enough-token' })
  await t.rejects(service.add({ roles: ['node'], ttlMs: 1000, value: 'a-long-enough-token' }), /already exists/)
})
