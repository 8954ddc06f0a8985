import t from 'tap'
import { closest, didYouMean } from './suggest.ts'

t.test('the nearest candidate within two edits, a swap counting as one', async (t) => {
  t.equal(closest('ca_pin', ['ca-pin', 'config', 'data-dir']), 'ca-pin')
  t.equal(closest('nod', ['auth', 'proxy', 'node']), 'node')
  t.equal(closest('nodes', ['auth', 'proxy', 'node']), 'node')
  t.equal(closest('hots', ['host', 'user']), 'host', 'a swap of neighbours is one edit')
  t.equal(closest('Json', ['text', 'json']), 'json', 'case does not count')
  t.equal(closest('lables', ['version', 'labels', 'nodename']), 'labels')
  t.equal(closest('auth_servr', ['auth_servers', 'auth_service']), 'auth_servers', 'the nearest, not the first')
})

t.test('nothing when no candidate is close enough to be what was meant', async (t) => {
  t.equal(closest('yaml', ['text', 'json']), undefined)
  t.equal(closest('bogus', ['init', 'update_clients', 'standby']), undefined)
  t.equal(closest('ls', ['rm']), undefined, 'two edits in a two-letter word is another word')
  t.equal(closest('x', []), undefined)
})

t.test('didYouMean', async (t) => {
  t.equal(didYouMean('--ca-pin'), ': did you mean --ca-pin?')
  t.equal(didYouMean(undefined), '')
})
