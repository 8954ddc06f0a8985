// What `warrenctl nodes label` sends: its KEY=VALUE arguments and --remove keys, and the
// mistakes it refuses as bad usage before anything connects.

import t from 'tap'
import { UsageError } from '../../shared/errors.ts'
import { parseLabelChanges } from './nodes.ts'

t.test('KEY=VALUE pairs, given apart or joined by commas, and --remove keys', async (t) => {
  t.same(parseLabelChanges('pi-1', ['env=prod', 'site=berlin,rack=r2'], []), { set: { env: 'prod', site: 'berlin', rack: 'r2' }, remove: [] })
  t.same(parseLabelChanges('pi-1', [], ['site', 'owner', 'site']), { set: {}, remove: ['site', 'owner'] }, 'each key once')
  t.same(parseLabelChanges('pi-1', ['env=lab'], ['owner']), { set: { env: 'lab' }, remove: ['owner'] })
  t.same(parseLabelChanges('pi-1', ['note=', 'env=a', 'env=b'], []).set, { note: '', env: 'b' }, 'an empty value is a value; the last of a key wins')
  t.same(parseLabelChanges('pi-1', ['topology.kubernetes.io/zone=eu-1'], []).set, { 'topology.kubernetes.io/zone': 'eu-1' })
  const own = parseLabelChanges('pi-1', ['__proto__=x', 'constructor=y'], []).set
  t.same(
    Object.entries(own),
    [
      ['__proto__', 'x'],
      ['constructor', 'y'],
    ],
    'a key named like a property of every object is a label like any other',
  )
})

function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  return undefined
}

t.test('mistakes are usage errors that name them', async (t) => {
  const cases: [string, string[], string[], RegExp][] = [
    ['pi-1', [], [], /^nothing to change: give KEY=VALUE to assign a label, or --remove=KEY to remove one$/],
    ['pi-1', [','], [], /^nothing to change/],
    ['pi-1', ['env=lab'], ['env'], /^label "env" is both assigned and removed: give one of env=VALUE and --remove=env$/],
    ['pi-1', ['env'], [], /^invalid label "env": use key=value to assign a label \(env=prod\), --remove=key to remove one$/],
    ['pi-1', ['=lab'], [], /^invalid label "=lab"/],
    ['pi-1', ['bad key=x'], [], /^label "bad key" is not a valid label name/],
    ['pi-1', ['motd=\x1b[2J'], [], /^label "motd" holds a control character/],
    ['pi-1', [`k=${'v'.repeat(257)}`], [], /^label "k" is longer than 256 characters/],
    ['pi-1', [Array.from({ length: 65 }, (_, i) => `k${i}=v`).join(',')], [], /^at most 64 labels are allowed, not 65$/],
    ['pi-1', [], ['a b'], /^--remove: "a b" is not a valid label name/],
    ['pi-1', [], ['\x1b[2J'], /^--remove: "\\u001b\[2J" is not a valid label name/],
    ['pi-1', [], Array.from({ length: 65 }, (_, i) => `k${i}`), /^--remove takes at most 64 keys at once, not 65$/],
    ['env=lab', ['site=x'], [], /^"warrenctl nodes label" needs the node first \(its name or host ID\), then KEY=VALUE\.\.\., not "env=lab"$/],
  ]
  for (const [node, pairs, remove, message] of cases) {
    const what = JSON.stringify([node, pairs, remove]).slice(0, 80)
    const error = thrown(() => parseLabelChanges(node, pairs, remove))
    t.type(error, UsageError, what)
    t.match((error as Error).message, message, what)
  }
})
