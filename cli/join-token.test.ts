import t from 'tap'
import { tokenOnCommandLine, tokenOrigin, withoutToken } from './join-token.ts'

t.test('withoutToken drops the token in both spellings, and nothing else', async (t) => {
  t.same(withoutToken(['start', '--roles=node', '--token=abc', '--ca-pin=sha256:00']), ['start', '--roles=node', '--ca-pin=sha256:00'])
  t.same(withoutToken(['start', '--token', 'abc', '--nodename=pi']), ['start', '--nodename=pi'])
  t.same(withoutToken(['start', '--tokens=x', '--forget-token']), ['start', '--tokens=x', '--forget-token'], 'other flags stay')
  t.same(withoutToken(['start', '--', '--token=abc']), ['start', '--', '--token=abc'], 'not past --')
})

t.test('only a value on the command line needs hiding', async (t) => {
  t.ok(tokenOnCommandLine({ token: 'abc' }))
  t.notOk(tokenOnCommandLine({ token: '-' }), 'standard input')
  t.notOk(tokenOnCommandLine({ token: '/etc/warren/token' }), 'a file path')
  t.notOk(tokenOnCommandLine({}))
})

t.test('tokenOrigin: the flag wins over the config file', async (t) => {
  t.same(tokenOrigin({ token: 'abc', config: '/etc/warren.yaml' }, 'def'), { given: 'abc' })
  t.same(tokenOrigin({ config: '/etc/warren.yaml' }, 'def'), { given: 'def', configPath: '/etc/warren.yaml' })
  t.equal(tokenOrigin({}, undefined), undefined)
})
