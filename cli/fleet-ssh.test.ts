import { chmodSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import t from 'tap'
import type { PresentNode } from '../shared/protocol/admin.ts'
import { describeOutcome, formatSummary, LinePrefixer, runOnNodes } from './fleet-ssh.ts'

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

t.test("a node's name is escaped in its lines' prefix and in the summary; what the command prints passes as it is", async (t) => {
  // An ssh that prints a coloured line on stdout and a line on stderr, and fails.
  const bin = t.testdir({ ssh: "#!/bin/sh\nprintf '\\033[31mred\\033[0m\\n'\necho oops >&2\nexit 3\n" })
  chmodSync(join(bin, 'ssh'), 0o755)
  const path = process.env.PATH
  process.env.PATH = `${bin}${delimiter}${path}`
  t.teardown(() => {
    process.env.PATH = path
  })
  // A title and a bell, which a terminal would act on, in a name from the cluster's listing.
  const nodename = 'pi\x1b]0;owned\x07\x1b[2J'
  const node = { host_id: '3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21', nodename, addr: '', tunnel: true, labels: {}, last_seen: 0 } satisfies PresentNode
  const stdout: string[] = []
  const stderr: string[] = []
  const outcomes = await runOnNodes([node], 1, () => [], { stdout: (text) => stdout.push(text), stderr: (text) => stderr.push(text) })
  const escaped = '[pi\\x1b]0;owned\\x07\\x1b[2J] '
  t.same(stdout, [`${escaped}\x1b[31mred\x1b[0m\n`], "the prefix escaped, the node's output untouched")
  t.same(stderr, [`${escaped}oops\n`])
  t.same(outcomes, [{ node: nodename, code: 3, signal: null }])
  const summary = formatSummary(outcomes)
  t.notOk(/[\x07\x1b]/.test(summary), 'the summary holds no ESC or BEL')
  t.match(summary, /\nFailed on 1 of 1 node: pi\\x1b\]0;owned\\x07\\x1b\[2J\n$/)
})
