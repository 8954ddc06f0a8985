// A recording on real files: the lines of one loop turn reach the file in that turn's check
// phase with the times their events happened, output given just before the session ends is in the finished file, and every
// event keeps its order.

import { existsSync, readFileSync } from 'node:fs'
import { setImmediate as nextTurn } from 'node:timers/promises'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import { MAX_RECORDING_BYTES } from '../shared/protocol/recordings.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { SessionRecording } from './session-recording.ts'

const log = createLogger('test')
const start = { sessionId: '0f9d1c3e-2b4a-4c1e-9a53-2f1d7f0e4b21', cols: 80, rows: 24, env: { TERM: 'xterm' } }

/** The file's events after its header line. */
function events(path: string): unknown[] {
  const lines = readFileSync(path, 'utf8').split('\n').filter(Boolean)
  return lines.slice(1).map((line) => JSON.parse(line) as unknown[])
}

t.test("a turn's output is in the file once the turn's check phase has run", async (t) => {
  const recording = new SessionRecording(tempDir(), { ...start, clock: () => 0 }, log)
  recording.output(Buffer.from('one '))
  recording.output(Buffer.from('two\r\n'))
  recording.resize(100, 30)
  await nextTurn()
  t.same(events(`${recording.path}.part`), [
    [0, 'o', 'one '],
    [0, 'o', 'two\r\n'],
    [0, 'r', '100x30'],
  ])
  await recording.end()
})

t.test('an event keeps the time it happened, not the time its line is written', async (t) => {
  let now = 5_000
  const recording = new SessionRecording(tempDir(), { ...start, clock: () => now }, log)
  recording.output(Buffer.from('prompt$ '))
  now += 250
  recording.resize(120, 40)
  now += 4_000
  t.same(events(`${recording.path}.part`), [], 'nothing is written before the check phase')
  await nextTurn()
  t.same(events(`${recording.path}.part`), [
    [0, 'o', 'prompt$ '],
    [0.25, 'r', '120x40'],
  ])
  await recording.end()
})

t.test('output given just before the end is in the finished file, in order', async (t) => {
  let now = 1_000
  const recording = new SessionRecording(tempDir(), { ...start, clock: () => now }, log)
  recording.output(Buffer.from('first\r\n'))
  await nextTurn()
  now += 1_500
  recording.output(Buffer.from('last\r\n'))
  await recording.end()
  t.notOk(existsSync(`${recording.path}.part`), 'the working file is renamed')
  t.same(events(recording.path), [
    [0, 'o', 'first\r\n'],
    [1.5, 'o', 'last\r\n'],
  ])
})

t.test('a character split across two reads is recorded whole', async (t) => {
  const recording = new SessionRecording(tempDir(), { ...start, clock: () => 0 }, log)
  const euro = Buffer.from('€')
  recording.output(euro.subarray(0, 1))
  recording.output(euro.subarray(1))
  await recording.end()
  t.same(events(recording.path), [[0, 'o', '€']])
})

t.test('a recording that reaches its bound stops growing and says so once, with the bytes it keeps', async (t) => {
  const stops: { code: string; bytesKept: number }[] = []
  const recording = new SessionRecording(tempDir(), { ...start, clock: () => 0, onStopped: (why, bytesKept) => stops.push({ code: why.code, bytesKept }) }, log)
  const chunk = Buffer.alloc(1024 * 1024, 'x')
  for (let i = 0; i < 20; i++) {
    recording.output(chunk)
    await nextTurn()
  }
  await recording.end()
  t.same(
    stops.map((stop) => stop.code),
    ['size_bound'],
  )
  const kept = readFileSync(recording.path)
  t.ok(kept.length <= MAX_RECORDING_BYTES, 'the file is within the bound')
  t.equal(stops[0]!.bytesKept, kept.length, 'the bytes it keeps are those on disk')
  t.equal(events(recording.path).length, 15, 'the events that fit whole: 15 of 1 MiB and their framing')
})
