import { join } from 'node:path'
import t from 'tap'
import { AcmeRecordError, AcmeRecords, MAX_RECORD_BYTES } from './acme-records.ts'
import { SqliteBackend } from './backend/sqlite.ts'

t.test('ACME records: the names proxy/acme uses, kept in the backend', async (t) => {
  const backend = SqliteBackend.open(join(t.testdir(), 'backend.db'))
  t.teardown(() => backend.close())
  const records = new AcmeRecords(backend)
  t.equal(await records.get('acme/account'), undefined, 'absent at first')
  await records.put('acme/account', '{"keyPem":"k"}')
  await records.put('acme/cert/proxy.example.com', '{"certPem":"c"}')
  t.equal(await records.get('acme/account'), '{"keyPem":"k"}')
  t.equal(await records.get('acme/cert/proxy.example.com'), '{"certPem":"c"}')
  t.same(
    (await backend.list('/acme/')).map((item) => item.key),
    ['/acme/account', '/acme/cert/proxy.example.com'],
    'under /acme/ in the backend',
  )

  for (const name of ['acme/../tokens/x', 'tokens/abc', 'acme/cert/', 'acme/cert/UPPER.example.com', 'acme/accounts']) {
    await t.rejects(records.get(name), { constructor: AcmeRecordError, message: /not an ACME record name/ }, `refuses ${name}`)
    await t.rejects(records.put(name, 'x'), { constructor: AcmeRecordError, message: /not an ACME record name/ }, `and does not write ${name}`)
  }
  await t.rejects(records.put('acme/account', 'x'.repeat(MAX_RECORD_BYTES + 1)), { constructor: AcmeRecordError, message: /larger than/ })
  t.equal(await records.get('acme/account'), '{"keyPem":"k"}', 'a refused write changes nothing')
})
