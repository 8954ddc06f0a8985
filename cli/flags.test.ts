import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { UsageError } from '../shared/errors.ts'
import { defineFlags, expandHome, flagsEndAt, parseFlags, splitList, wantsHelp } from './flags.ts'

const SPEC = defineFlags({
  token: { type: 'string', description: 'join token or file' },
  ttl: { type: 'duration', default: 30 * 60_000, description: 'token lifetime' },
  'ca-pin': { type: 'list', description: 'CA pins' },
  roles: { type: 'list', values: ['auth', 'proxy', 'node'], noun: 'role', default: ['node'], description: 'roles' },
  format: { type: 'enum', values: ['text', 'json'], default: 'text', description: 'output' },
  out: { type: 'path', description: 'where to write' },
  insecure: { type: 'boolean', description: 'skip checks' },
  port: { type: 'string', short: 'p', default: '22', description: 'port' },
})
const COMMAND = 'warren start'

function errorOf(fn: () => unknown): Error | undefined {
  try {
    fn()
  } catch (err) {
    return err as Error
  }
  return undefined
}

t.test('defaults when nothing is given, with the types the spec declares', async (t) => {
  const { flags, args } = parseFlags([], SPEC, COMMAND)
  t.same(flags, { ttl: 30 * 60_000, roles: ['node'], format: 'text', insecure: false, port: '22' })
  t.same(args, [])
  // Checked by tsc: a defaulted flag is always there, an enum is its values, a flag without a default may be absent.
  const ttl: number = flags.ttl
  const format: 'text' | 'json' = flags.format
  const roles: ('auth' | 'proxy' | 'node')[] = flags.roles
  const token: string | undefined = flags.token
  t.ok(ttl && format && roles && token === undefined)
})

t.test('--name=value and --name value', async (t) => {
  const { flags } = parseFlags(['--token=abc', '--port', '2222', '--ttl', '5m', '--ca-pin=sha256:aa, sha256:bb,,'], SPEC, COMMAND)
  t.equal(flags.token, 'abc')
  t.equal(flags.port, '2222')
  t.equal(flags.ttl, 300_000)
  t.same(flags['ca-pin'], ['sha256:aa', 'sha256:bb'], 'dashed key, items trimmed, empties dropped')
  t.equal(parseFlags(['--token=a=b'], SPEC, COMMAND).flags.token, 'a=b', 'a value may contain "="')
  t.equal(parseFlags(['-p', '22022'], SPEC, COMMAND).flags.port, '22022', 'a short alias')
})

t.test('booleans take no value', async (t) => {
  t.equal(parseFlags(['--insecure'], SPEC, COMMAND).flags.insecure, true)
  const { flags, args } = parseFlags(['--insecure', 'false'], SPEC, COMMAND)
  t.equal(flags.insecure, true, 'a boolean never takes the next argument')
  t.same(args, ['false'])
  const err = errorOf(() => parseFlags(['--insecure=maybe'], SPEC, COMMAND))
  t.type(err, UsageError)
  t.match(err?.message, /^flag --insecure takes no value/)
})

t.test('positional arguments, interleaved, and -- ends flags', async (t) => {
  const { flags, args } = parseFlags(['a', '--token', 't', 'b', '--', '--insecure', '-p'], SPEC, COMMAND)
  t.same(args, ['a', 'b', '--insecure', '-p'])
  t.equal(flags.insecure, false)
  t.same(parseFlags(['-'], SPEC, COMMAND).args, ['-'])
})

t.test('a list flag replaces its default and adds up when repeated', async (t) => {
  t.same(parseFlags(['--roles=proxy'], SPEC, COMMAND).flags.roles, ['proxy'])
  t.same(parseFlags(['--roles=proxy', '--roles', 'node,auth'], SPEC, COMMAND).flags.roles, ['proxy', 'node', 'auth'])
  t.same(SPEC.roles.default, ['node'], 'the default itself is untouched')
})

t.test('a flag that takes one value is refused when given twice, however it is written', async (t) => {
  for (const argv of [
    ['--ttl=1h', '--ttl=5m'],
    ['--token', 'a', '--token=b'],
    ['-p', '22', '--port=2222'],
    ['--format=json', '--format=json'],
    ['--out=/a', '--out=/b'],
  ]) {
    const err = errorOf(() => parseFlags(argv, SPEC, COMMAND))
    t.type(err, UsageError, argv.join(' '))
    t.match(err?.message, /^flag --(ttl|token|port|format|out) is given more than once for "warren start": give it once$/, argv.join(' '))
    t.notMatch(err?.message, /1h|5m|2222|json|\/a/, 'the values are not repeated back')
  }
  t.equal(parseFlags(['--insecure', '--insecure'], SPEC, COMMAND).flags.insecure, true, 'a boolean says the same each time')
  t.same(parseFlags(['--token=a', '--', '--token=b'], SPEC, COMMAND).args, ['--token=b'], 'after --, an argument')
})

t.test('unknown flags are refused with the command name and the closest flag', async (t) => {
  const err = errorOf(() => parseFlags(['--foo'], SPEC, 'warrenctl tokens ls'))
  t.type(err, UsageError)
  t.equal(err?.message, 'unknown flag --foo for "warrenctl tokens ls"')
  t.equal(errorOf(() => parseFlags(['--ca_pin=sha256:aa'], SPEC, COMMAND))?.message, 'unknown flag --ca_pin for "warren start": did you mean --ca-pin?')
  t.equal(errorOf(() => parseFlags(['--tokn', 'x'], SPEC, COMMAND))?.message, 'unknown flag --tokn for "warren start": did you mean --token?')
  t.equal(errorOf(() => parseFlags(['-x'], SPEC, COMMAND))?.message, 'unknown flag -x for "warren start"')
})

t.test('a missing value is refused', async (t) => {
  const err = errorOf(() => parseFlags(['--ttl'], SPEC, COMMAND))
  t.type(err, UsageError)
  t.equal(err?.message, 'flag --ttl needs a value')
  t.equal(errorOf(() => parseFlags(['--token', '--insecure'], SPEC, COMMAND))?.message, 'flag --token needs a value')
  t.equal(errorOf(() => parseFlags(['-p'], SPEC, COMMAND))?.message, 'flag --port needs a value')
  t.equal(parseFlags(['--token=-abc'], SPEC, COMMAND).flags.token, '-abc', 'a dash value can be written inline')
  t.equal(parseFlags(['--token', '-'], SPEC, COMMAND).flags.token, '-', 'a lone dash is a value')
  t.equal(parseFlags(['--token='], SPEC, COMMAND).flags.token, '', 'an explicit empty value is a value')
})

t.test('durations are checked and the error names the flag', async (t) => {
  const err = errorOf(() => parseFlags(['--ttl=5x'], SPEC, COMMAND))
  t.type(err, UsageError)
  t.equal(err?.message, 'invalid duration "5x" for --ttl: use a number with a unit, e.g. 30s, 5m, 1h')
})

t.test('values from a set: the closest one is suggested', async (t) => {
  t.equal(parseFlags(['--format=json'], SPEC, COMMAND).flags.format, 'json')
  const near = errorOf(() => parseFlags(['--format=jsno'], SPEC, COMMAND))
  t.type(near, UsageError)
  t.equal(near?.message, 'unknown --format "jsno": did you mean json? (use text or json)')
  t.equal(errorOf(() => parseFlags(['--format=yaml'], SPEC, COMMAND))?.message, 'unknown --format "yaml": use text or json')
  t.equal(errorOf(() => parseFlags(['--roles=node,prxy'], SPEC, COMMAND))?.message, 'unknown role "prxy" for --roles: did you mean proxy? (use auth, proxy or node)')
  t.equal(errorOf(() => parseFlags(['--roles=nodes'], SPEC, COMMAND))?.message, 'unknown role "nodes" for --roles: did you mean node? (use auth, proxy or node)')
})

t.test('a path flag expands a leading ~, also where the shell does not (--out=~/x)', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'warren-home-'))
  const saved = process.env.HOME
  process.env.HOME = home
  t.teardown(() => {
    process.env.HOME = saved
  })
  t.equal(parseFlags(['--out=~/creds'], SPEC, COMMAND).flags.out, join(home, 'creds'))
  t.equal(parseFlags(['--out', '~'], SPEC, COMMAND).flags.out, home)
  t.equal(parseFlags(['--out=./~/x'], SPEC, COMMAND).flags.out, './~/x', 'only a leading ~')
  t.equal(parseFlags(['--out=~other/x'], SPEC, COMMAND).flags.out, '~other/x', "another user's ~ is left alone")
  t.equal(parseFlags(['--token=~/t'], SPEC, COMMAND).flags.token, '~/t', 'not a path flag')
  t.equal(expandHome('/abs'), '/abs')
})

t.test('help is asked by --help or -h among the flags, never by a value or an argument after them', async (t) => {
  t.ok(wantsHelp(['--help'], SPEC))
  t.ok(wantsHelp(['--token=x', '-h', '--ttl=bogus'], SPEC), 'whatever the other flags are')
  t.ok(wantsHelp(['--bogus', '--help'], SPEC))
  t.notOk(wantsHelp(['--token=-h'], SPEC))
  t.notOk(wantsHelp(['--', '--help'], SPEC))
  t.notOk(wantsHelp(['root@pi', 'ls', '--help'], SPEC, 0), 'after the flags end')
  t.notOk(wantsHelp([], SPEC))
})

t.test('flagsEndAt: the first argument that is neither a flag nor its value', async (t) => {
  t.equal(flagsEndAt(['-p', '22', '--insecure', 'root@pi', 'ls', '-l'], SPEC), 3)
  t.equal(flagsEndAt(['--token=x', 'root@pi'], SPEC), 1)
  t.equal(flagsEndAt(['--insecure'], SPEC), 1)
  t.equal(flagsEndAt(['--', 'root@pi'], SPEC), 0)
})

t.test('splitList', async (t) => {
  t.same(splitList(' a, b ,,c,'), ['a', 'b', 'c'])
  t.same(splitList(''), [])
})
