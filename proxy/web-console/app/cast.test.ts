// The browser's replay of a recording, with a screen that notes what it is handed: the
// output and size changes in their order, pause that holds it, speed, restart from a
// clean screen, and a recording in another format refused.

import t from 'tap'
import { CastPlayer, MAX_SIZE, type PlayerScreen, parseCast } from './cast.ts'

const CAST = [
  JSON.stringify({ version: 2, width: 80, height: 24, timestamp: 1_700_000_000 }),
  JSON.stringify([0.01, 'o', '$ ']),
  JSON.stringify([0.02, 'o', 'echo $((6*7))\r\n']),
  JSON.stringify([0.03, 'r', '100x30']),
  JSON.stringify([0.04, 'o', '42\r\n']),
  JSON.stringify([0.05, 'o', '$ ']),
  '',
].join('\n')

/** A screen that records calls; `ended` settles when the replay says it ended. */
function screen(): PlayerScreen & { calls: string[]; ended: Promise<void> } {
  const calls: string[] = []
  let end = () => {}
  const ended = new Promise<void>((resolve) => {
    end = resolve
  })
  return {
    calls,
    ended,
    write: (data) => calls.push(`o ${data}`),
    resize: (cols, rows) => calls.push(`r ${cols}x${rows}`),
    reset: () => calls.push('reset'),
    progress: (_at, done) => {
      if (done) end()
    },
  }
}

t.test('a recording replays its output and size changes in order', async (t) => {
  const cast = parseCast(CAST)
  t.equal(cast.width, 80)
  t.equal(cast.height, 24)
  const s = screen()
  const player = new CastPlayer(cast, s)
  player.setSpeed(100)
  player.play()
  await s.ended
  t.same(s.calls, ['o $ ', 'o echo $((6*7))\r\n', 'r 100x30', 'o 42\r\n', 'o $ '])
  t.notOk(player.playing, 'stopped at the end')
})

t.test('pause holds the replay where it is; play goes on from there', async (t) => {
  const s = screen()
  const player = new CastPlayer(parseCast(CAST), s)
  player.play()
  player.pause()
  const held = s.calls.length
  t.notOk(player.playing)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(s.calls.length, held, 'nothing while paused')
  player.setSpeed(100)
  player.play()
  await s.ended
  t.same(s.calls.filter((call) => call.startsWith('o ')).length, 4, 'every output once')
})

t.test('play after the end starts again from a clean screen', async (t) => {
  const first = screen()
  const player = new CastPlayer(parseCast(CAST), first)
  player.setSpeed(100)
  player.play()
  await first.ended
  const calls = first.calls.length
  player.play()
  t.equal(first.calls[calls], 'reset', 'the screen is reset first')
  player.stop()
})

t.test('a file that is not asciicast v2 is refused', async (t) => {
  t.throws(() => parseCast(''), /empty/)
  t.throws(() => parseCast('{"version":1}\n'), /not in asciicast v2 format/)
})

t.test('sizes no screen could hold are cut to MAX_SIZE', async (t) => {
  const huge = [JSON.stringify({ version: 2, width: 60000, height: 1e9 }), JSON.stringify([0.01, 'r', '65535x65535']), JSON.stringify([0.02, 'r', '0x0']), ''].join('\n')
  const cast = parseCast(huge)
  t.equal(cast.width, MAX_SIZE)
  t.equal(cast.height, MAX_SIZE)
  const s = screen()
  const player = new CastPlayer(cast, s)
  player.setSpeed(100)
  player.play()
  await s.ended
  t.same(s.calls, [`r ${MAX_SIZE}x${MAX_SIZE}`], 'the huge resize is cut, the empty one left out')
})
