import t from 'tap'
import { UsageError } from './errors.ts'
import { formatLabels, isSelector, matchesSelectors, parseSelectors } from './selectors.ts'

t.test('selectors come joined by commas or as separate operands, and all must match', async (t) => {
  const selectors = parseSelectors(['env=lab,site=berlin', 'rack=*'])
  t.same(selectors, [
    { key: 'env', value: 'lab' },
    { key: 'site', value: 'berlin' },
    { key: 'rack', value: '*' },
  ])
  t.ok(matchesSelectors(selectors, { env: 'lab', site: 'berlin', rack: '4' }))
  t.notOk(matchesSelectors(selectors, { env: 'lab', site: 'paris', rack: '4' }), 'one value differs')
  t.notOk(matchesSelectors(selectors, { env: 'lab', site: 'berlin' }), 'key=* needs the label')
  t.ok(matchesSelectors([], {}), 'no selector selects everything')
  t.same(parseSelectors([' env=lab ']), [{ key: 'env', value: 'lab' }], 'items are trimmed')
})

t.test('a label with several values matches when one does', async (t) => {
  t.ok(matchesSelectors(parseSelectors(['type=proxy']), { type: ['node', 'proxy'] }))
  t.notOk(matchesSelectors(parseSelectors(['type=auth']), { type: ['node', 'proxy'] }))
  t.notOk(matchesSelectors(parseSelectors(['type=*']), { type: [] }))
})

t.test('bad selectors are usage errors that name them', async (t) => {
  const cases: [string, RegExp][] = [
    ['env', /^invalid selector "env": use key=value or key=\*, e.g. env=prod$/],
    ['=lab', /^invalid selector "=lab": use key=value/],
    ['env=lab,,site=x', /^empty selector in "env=lab,,site=x"/],
    ['bad key=x', /^invalid selector "bad key=x": the key is not a valid label name/],
    ['*=x', /^invalid selector "\*=x": the key is not a label name/],
    ['env=\x1b[2J', /^invalid selector "env=\\x1b\[2J": the value holds a control character/],
    [`env=${'v'.repeat(257)}`, /the value is longer than 256 characters/],
  ]
  for (const [text, message] of cases) t.throws(() => parseSelectors([text]), { constructor: UsageError, message }, JSON.stringify(text))
})

t.test('a host part is a selector when it has =', async (t) => {
  t.ok(isSelector('env=lab'))
  t.notOk(isSelector('pi-1'))
})

t.test('labels are shown as k=v, sorted by key', async (t) => {
  t.equal(formatLabels({ site: 'lab', env: 'prod', a: '' }), 'a=,env=prod,site=lab')
  t.equal(formatLabels({}), '')
})
