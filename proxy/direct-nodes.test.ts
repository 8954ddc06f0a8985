import t from 'tap'
import type { DirectNodeEntry } from '../shared/protocol/proxies.ts'
import { DIRECT_NODES_CACHE_MS, DIRECT_NODES_MISS_REFRESH_MS, DirectNodeBook } from './direct-nodes.ts'

/** A book over an answer the test changes, with its own clock, counting the requests. */
function book(initial: DirectNodeEntry[]) {
  const state = { entries: initial, now: 1_000_000, asked: 0, failing: false }
  const directory = new DirectNodeBook({
    fetch: async () => {
      state.asked++
      if (state.failing) throw new Error('auth server unreachable')
      return state.entries
    },
    now: () => state.now,
  })
  return { state, directory }
}

const pi = { host_id: 'h-1', nodename: 'pi', addr: '10.0.0.5:3022', labels: { env: 'lab' } }

t.test('found by name or host ID, with the port of its address or the default, and its labels', async (t) => {
  const { directory } = book([pi, { host_id: 'h-2', nodename: 'old', addr: '10.0.0.6' }, { host_id: 'h-3', nodename: 'v6', addr: '[fd00::7]:4022' }])
  t.same(await directory.find('pi'), { hostId: 'h-1', nodename: 'pi', host: '10.0.0.5', port: 3022, labels: { env: 'lab' } })
  t.same(await directory.find('h-1'), { hostId: 'h-1', nodename: 'pi', host: '10.0.0.5', port: 3022, labels: { env: 'lab' } })
  t.same(
    await directory.find('old'),
    { hostId: 'h-2', nodename: 'old', host: '10.0.0.6', port: 3022, labels: {} },
    'an IP alone: the default port; no labels from an older auth server',
  )
  t.same(await directory.find('v6'), { hostId: 'h-3', nodename: 'v6', host: 'fd00::7', port: 4022, labels: {} })
})

t.test('one answer serves a burst; a missing name asks again, at most once a second', async (t) => {
  const { state, directory } = book([pi])
  await Promise.all([directory.find('pi'), directory.find('pi'), directory.find('pi')])
  t.equal(state.asked, 1, 'concurrent lookups share one request')
  t.equal(await directory.find('nowhere'), undefined)
  t.equal(state.asked, 1, 'a miss right after an answer does not ask again')
  state.now += DIRECT_NODES_MISS_REFRESH_MS
  state.entries = [pi, { host_id: 'h-9', nodename: 'new', addr: '10.0.0.9:3022' }]
  t.equal((await directory.find('new'))?.hostId, 'h-9', 'a node that came online since is found')
  t.equal(state.asked, 2)
  for (let i = 0; i < 5; i++) await directory.find('nowhere')
  t.equal(state.asked, 2, 'unknown names cannot make it ask once per connection')
  state.now += DIRECT_NODES_CACHE_MS
  await directory.find('pi')
  t.equal(state.asked, 3, 'a known name asks again once the answer is old')
  directory.forget()
  await directory.find('pi')
  t.equal(state.asked, 4, 'after a failed dial the next lookup asks')
})

t.test('while the auth server does not answer, its last answer stands', async (t) => {
  const { state, directory } = book([pi])
  state.failing = true
  await t.rejects(() => directory.find('pi'), /auth server unreachable/, 'no answer yet: the error')
  state.failing = false
  state.now += DIRECT_NODES_CACHE_MS
  t.ok(await directory.find('pi'))
  state.failing = true
  state.now += DIRECT_NODES_CACHE_MS
  t.equal((await directory.find('pi'))?.hostId, 'h-1', 'the last answer')
})

t.test('a name that several direct nodes share is refused; their host IDs work', async (t) => {
  const { directory } = book([pi, { host_id: 'h-2', nodename: 'pi', addr: '10.0.0.6:3022' }])
  await t.rejects(() => directory.find('pi'), /2 direct nodes are named "pi": use a host ID \(h-1, h-2\)/)
  t.equal((await directory.find('h-2'))?.host, '10.0.0.6')
})
