import t from 'tap'
import { parseDialRequest, REFUSED_GENERATIONS_MAX } from './protocol/dial.ts'
import { parseSnapshot } from './protocol/proxies.ts'
import { RevocationList } from './revocation-list.ts'

t.test('a refusal holds until its end, and a new generation replaces the list', async (t) => {
  const clock = { now: 1000 }
  const list = new RevocationList(() => clock.now)
  t.equal(list.refusedHost('h1'), undefined, 'an empty list refuses nobody')
  t.ok(
    list.replace({
      generation: '2.7',
      hosts: [
        { host_id: 'h1', nodename: 'pi-1', reason: 'node "pi-1" is locked', until: 2000 },
        { host_id: 'h2', nodename: 'pi-2', reason: 'removed' },
      ],
      users: [{ name: 'alice', reason: 'user "alice" is locked', until: 1500 }],
    }),
  )
  t.notOk(list.replace({ generation: '2.7', hosts: [], users: [] }), 'the same generation is the list held')
  t.equal(list.refusedHost('h1'), 'node "pi-1" is locked')
  t.equal(list.refusedUser('alice'), 'user "alice" is locked')
  clock.now = 1500
  t.equal(list.refusedUser('alice'), undefined, 'a lock ends at its end, to the millisecond')
  clock.now = 10_000_000
  t.equal(list.refusedHost('h1'), undefined)
  t.equal(list.refusedHost('h2'), 'removed', 'a removal has no end')
  t.ok(list.replace({ generation: '3.9', hosts: [], users: [] }))
  t.equal(list.refusedHost('h2'), undefined)
})

t.test('a list from the network keeps only well-formed entries', async (t) => {
  t.equal(parseSnapshot(null), undefined)
  t.equal(parseSnapshot({ hosts: [], users: [] }), undefined, 'no generation')
  t.same(
    parseSnapshot({
      generation: '1.2',
      hosts: [{ host_id: 'h1', reason: 'x', until: 5 }, { host_id: 7, reason: 'x' }, { host_id: 'h3' }, 'junk'],
      users: [{ name: 'bob', reason: 'y', until: 'soon' }, null],
    }),
    {
      generation: '1.2',
      hosts: [{ host_id: 'h1', nodename: '', reason: 'x', until: 5 }],
      users: [{ name: 'bob', reason: 'y' }],
    },
  )
})

t.test('a lock on the certificates from before a reset refuses those alone, by the start of their validity', async (t) => {
  const list = new RevocationList(() => 5_000)
  list.replace({
    generation: '1.1',
    hosts: [],
    users: [
      { name: 'alice', reason: 'certificates of alice from before the reset', until: 9_000, valid_from_before: 3_000 },
      { name: 'bob', reason: 'user "bob" is locked' },
    ],
  })
  t.equal(list.refusedUser({ name: 'alice', validFrom: 2_000 }), 'certificates of alice from before the reset', 'a certificate valid from before the cut')
  t.equal(list.refusedUser({ name: 'alice', validFrom: 3_000 }), undefined, 'one valid from the cut on is not refused')
  t.equal(list.refusedUser('alice'), undefined, 'nor the user itself: logins and new certificates go on')
  t.equal(list.refusedUser({ name: 'bob', validFrom: 4_000 }), 'user "bob" is locked', 'a lock on the user refuses every certificate of it')
  t.equal(list.refusedUser('bob'), 'user "bob" is locked')
  t.same(list.certificateCut('alice'), { validFrom: 3_000, generations: [], generationValidFrom: 3_000 }, "what a node is told of alice's certificates")
  t.same(list.certificateCut('bob'), { generations: [] }, 'a lock on the whole user limits no start (the proxy refuses the user)')
  t.same(new RevocationList(() => 9_000).certificateCut('alice'), { generations: [] })
  const later = new RevocationList(() => 5_000)
  later.replace({
    generation: '1.2',
    hosts: [],
    users: [
      { name: 'alice', reason: 'r', valid_from_before: 3_000 },
      { name: 'alice', reason: 'r', valid_from_before: 4_000 },
      { name: 'alice', reason: 'ended', until: 4_500, valid_from_before: 4_400 },
    ],
  })
  t.equal(later.certificateCut('alice').validFrom, 4_000, 'the latest of the resets in force')

  t.same(
    parseSnapshot({
      generation: '1.3',
      hosts: [],
      users: [
        { name: 'alice', reason: 'r', valid_from_before: 3_000 },
        { name: 'carol', reason: 'r', valid_from_before: 'soon' },
      ],
    })?.users,
    [
      { name: 'alice', reason: 'r', valid_from_before: 3_000 },
      { name: 'carol', reason: 'r' },
    ],
    'the limit travels to proxies; a malformed one is dropped, which locks the whole user rather than less',
  )
})

t.test("a lock's remaining time is counted down on the receiver's own clock, whatever its wall clock says", async (t) => {
  const clock = { monotonic: 50, wall: 1_000_000_000 }
  // A proxy whose wall clock is far ahead of the auth server's `until`.
  const list = new RevocationList(
    () => clock.monotonic,
    () => clock.wall,
  )
  list.replace({
    generation: '4.1',
    hosts: [{ host_id: 'h1', nodename: 'pi-1', reason: 'node locked', until: 2_000, remaining_ms: 1_000 }],
    users: [
      { name: 'alice', reason: 'alice locked', until: 2_000, remaining_ms: 1_000 },
      { name: 'old', reason: 'from an auth server of an earlier version', until: clock.wall + 500 },
    ],
  })
  t.equal(list.refusedUser('alice'), 'alice locked', 'an until long past on the wall clock ends nothing')
  t.equal(list.refusedHost('h1'), 'node locked')
  t.equal(list.refusedUser('old'), 'from an auth server of an earlier version', 'an entry without remaining_ms is judged by until')
  t.same(
    list.served().users.map((user) => user.remaining_ms),
    [1_000, 500],
    'served again with the time left',
  )
  clock.monotonic += 999
  clock.wall -= 3_600_000
  t.equal(list.refusedUser('alice'), 'alice locked', 'a wall clock set back changes nothing either')
  t.equal(list.refusedUser('old'), undefined, 'the old form ends when its time has passed on the monotonic clock too')
  clock.monotonic += 1
  t.equal(list.refusedUser('alice'), undefined, 'the lock ends once its remaining time has passed here')
  t.equal(list.refusedHost('h1'), undefined)
  t.same(list.served().users[0].remaining_ms, 0, 'an ended entry is served as lasting no longer')

  t.same(
    parseSnapshot({
      generation: '4.2',
      hosts: [],
      users: [
        { name: 'bob', reason: 'r', until: 9, remaining_ms: -5 },
        { name: 'eve', reason: 'r', remaining_ms: 7 },
      ],
    })?.users,
    [
      { name: 'bob', reason: 'r', until: 9 },
      { name: 'eve', reason: 'r', remaining_ms: 7 },
    ],
    'a malformed remaining_ms is dropped, and until judges',
  )
})

t.test('a lock that names the user generation it ended refuses the certificates that carry it, whatever their dates', async (t) => {
  const list = new RevocationList(() => 5_000)
  list.replace({
    generation: '5.1',
    hosts: [],
    users: [
      { name: 'alice', reason: 'alice was removed', valid_from_before: 3_000, generation: 'gen-old' },
      { name: 'bob', reason: 'bob was reset by an earlier version', valid_from_before: 3_000 },
    ],
  })
  t.equal(list.refusedUser({ name: 'alice', validFrom: 4_000, generation: 'gen-old' }), 'alice was removed', 'dated after the cut by a clock ahead, and refused')
  t.equal(list.refusedUser({ name: 'alice', validFrom: 2_000, generation: 'gen-new' }), undefined, 'another generation: not refused, whatever its dates')
  t.equal(list.refusedUser({ name: 'alice', validFrom: 2_000 }), 'alice was removed', 'a certificate of an earlier version is judged by its dates')
  t.equal(list.refusedUser({ name: 'alice', validFrom: 4_000 }), undefined)
  t.equal(
    list.refusedUser({ name: 'bob', validFrom: 2_000, generation: 'any' }),
    'bob was reset by an earlier version',
    'a lock without a generation judges every certificate by its dates',
  )
  t.same(list.certificateCut('alice'), { validFrom: 3_000, generations: ['gen-old'] }, 'a node is told the generation, and the dates for certificates without one')
  t.same(list.certificateCut('bob'), { validFrom: 3_000, generations: [], generationValidFrom: 3_000 })
  t.same(
    parseSnapshot({
      generation: '5.2',
      hosts: [],
      users: [
        { name: 'alice', reason: 'r', valid_from_before: 3_000, generation: 7 },
        { name: 'eve', reason: 'r', generation: 'g' },
      ],
    })?.users,
    [
      { name: 'alice', reason: 'r', valid_from_before: 3_000 },
      { name: 'eve', reason: 'r' },
    ],
    'a malformed generation reads as none (dates judge), and one without a cut means nothing',
  )
})

t.test('a user reset more often than a node can be told of: the newest generations by name, the older by the dates of their locks', async (t) => {
  const list = new RevocationList(() => 1_000_000)
  const resets = REFUSED_GENERATIONS_MAX + 10
  list.replace({
    generation: '6.1',
    hosts: [],
    users: Array.from({ length: resets }, (_, i) => ({ name: 'ci', reason: `reset ${i}`, valid_from_before: 1_000 * (i + 1), generation: `gen-${i}` })),
  })
  const cut = list.certificateCut('ci')
  t.equal(cut.generations.length, REFUSED_GENERATIONS_MAX, 'as many as a node takes')
  t.ok(cut.generations.includes(`gen-${resets - 1}`) && !cut.generations.includes('gen-0'), 'the newest')
  t.equal(cut.generationValidFrom, 1_000 * 11, 'the older ones: by the oldest lock told by name, a reset later than theirs')
  t.ok(parseDialRequest({ service: 'ssh', refused_generations: cut.generations }), 'a dial request a node takes')
})
