import t from 'tap'
import { describeOutcome, formatSummary, LinePrefixer } from './fleet-ssh.ts'

t.test('only complete lines are written, each prefixed; a last partial line ends with the stream', async (t) => {
  const writes: string[] = []
  const lines = new LinePrefixer('[pi-1] ', (text) => writes.push(text))
  lines.push('up')
  t.same(writes, [], 'half a line waits')
  lines.push('time 1\nsecond\nthi')
  lines.push('rd')
  t.same(writes, ['[pi-1] uptime 1\n[pi-1] second\n'])
  lines.push('\n\n')
  lines.push('no newline at the end')
  lines.end()
  t.same(writes, ['[pi-1] uptime 1\n[pi-1] second\n', '[pi-1] third\n[pi-1] \n', '[pi-1] no newline at the end\n'])
  lines.end()
  t.equal(writes.length, 3, 'nothing more after the end')
})

t.test('the summary names each node, its result, and those that failed', async (t) => {
  const summary = formatSummary([
    { node: 'lab-1', code: 0, signal: null },
    { node: 'lab-2', code: 3, signal: null },
    { node: 'lab-3', code: 255, signal: null },
    { node: 'lab-4', code: null, signal: 'SIGKILL' },
  ])
  t.equal(
    summary,
    [
      'Node Name  Result',
      '---------  -------------------------------------------------------------',
      'lab-1      ok (exit status 0)',
      'lab-2      failed (exit status 3)',
      'lab-3      failed: ssh could not run the command there (exit status 255)',
      'lab-4      failed: ssh was killed by SIGKILL',
      'Failed on 3 of 4 nodes: lab-2, lab-3, lab-4',
      '',
    ].join('\n'),
  )
  t.match(formatSummary([{ node: 'a', code: 0, signal: null }]), /\nSucceeded on all 1 node\.\n$/)
  t.equal(describeOutcome({ node: 'a', code: 0, signal: null }), 'ok (exit status 0)')
})
