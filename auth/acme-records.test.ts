import { generateKeyPairSync } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'
import { AcmeRecordError, AcmeRecords, MAX_RECORD_BYTES } from './acme-records.ts'
import { SqliteBackend } from './backend/sqlite.ts'

function accountRecord(extra: Record<string, string> = {}): string {
  const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  return JSON.stringify({ keyPem, ...extra })
}

t.test('ACME records: the names proxy/acme uses, kept in the backend', async (t) => {
  const backend = SqliteBackend.open(join(t.testdir(), 'backend.db'))
  t.teardown(() => backend.close())
  const records = new AcmeRecords(backend)
  const account = accountRecord()
  t.equal(await records.get('acme/account'), undefined, 'absent at first')
  await records.put('acme/account', account)
  await records.put('acme/cert/proxy.example.com', '{"certPem":"c"}')
  t.equal(await records.get('acme/account'), account)
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
  t.equal(await records.get('acme/account'), account, 'a refused write changes nothing')
})

t.test('the account keeps its first key: it is updated, never replaced', async (t) => {
  const backend = SqliteBackend.open(join(t.testdir(), 'backend.db'))
  t.teardown(() => backend.close())
  const records = new AcmeRecords(backend)
  const first = accountRecord()
  await records.put('acme/account', first)

  const registered = JSON.stringify({ ...JSON.parse(first), url: 'https://ca/acct/1', directoryUrl: 'https://ca/dir' })
  await records.put('acme/account', registered)
  t.equal(await records.get('acme/account'), registered, 'the same key with its account URL, as a proxy writes once registered')

  await t.rejects(
    records.put('acme/account', accountRecord({ url: 'https://ca/acct/2' })),
    { constructor: AcmeRecordError, message: /exists with another key/ },
    'another key is refused',
  )
  for (const unreadable of ['{}', 'not json', 'null', '{"keyPem":"not a key"}']) {
    await t.rejects(records.put('acme/account', unreadable), { constructor: AcmeRecordError, message: /must be JSON with keyPem/ }, `so is ${unreadable}`)
  }
  t.equal(await records.get('acme/account'), registered, 'the account is unchanged')

  // Damage written before these checks existed does not lock the proxies out for good.
  await backend.put('/acme/account', '{"keyPem":"damaged"}')
  const replacement = accountRecord()
  await records.put('acme/account', replacement)
  t.equal(await records.get('acme/account'), replacement, 'an unreadable account is replaced')
})

t.test('two proxies creating the account at once: one key wins, the other is refused', async (t) => {
  const backend = SqliteBackend.open(join(t.testdir(), 'backend.db'))
  t.teardown(() => backend.close())
  const records = new AcmeRecords(backend)
  const candidates = [accountRecord(), accountRecord()]
  const results = await Promise.allSettled(candidates.map((record) => records.put('acme/account', record)))
  t.same(results.map((result) => result.status).sort(), ['fulfilled', 'rejected'])
  const winner = candidates[results.findIndex((result) => result.status === 'fulfilled')]
  t.equal(await records.get('acme/account'), winner, 'the stored account is the one whose write succeeded')
})
