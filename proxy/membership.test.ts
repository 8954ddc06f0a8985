import t from 'tap'
import { LiveSetMembership } from './membership.ts'

/** A stand-in for the auth server's live set, with heartbeats that land when released. */
function liveSet() {
  const members = new Set<string>()
  const pending: (() => void)[] = []
  let beats = 0
  const membership = new LiveSetMembership(
    () => {
      beats++
      return new Promise<void>((resolve) =>
        pending.push(() => {
          members.add('p')
          resolve()
        }),
      )
    },
    async () => {
      members.delete('p')
    },
  )
  return { membership, members, land: () => pending.shift()?.(), beats: () => beats }
}

t.test('a heartbeat on its way when the proxy leaves cannot put it back', async (t) => {
  const { membership, members, land } = liveSet()
  const beat = membership.heartbeat()
  const left = membership.leave(10_000)
  land()
  await Promise.all([beat, left])
  t.notOk(members.has('p'), 'out of the live set after the late heartbeat landed')
})

t.test('heartbeats go one at a time, and none starts once leaving', async (t) => {
  const { membership, land, beats } = liveSet()
  const first = membership.heartbeat()
  const second = membership.heartbeat()
  t.equal(beats(), 1, 'a second heartbeat while one is in flight is the same one')
  t.equal(first, second)
  land()
  await first
  void membership.heartbeat()
  t.equal(beats(), 2, 'the next one starts once the first has landed')
  const left = membership.leave(10_000)
  await membership.heartbeat()
  t.equal(beats(), 2, 'no heartbeat starts while leaving')
  land()
  await left
})

t.test('a heartbeat that never lands holds up a leave only so long', async (t) => {
  const { membership, members } = liveSet()
  void membership.heartbeat()
  await membership.leave(20)
  t.notOk(members.has('p'), 'left without it')
})
