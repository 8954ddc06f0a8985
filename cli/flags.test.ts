import t from 'tap'
import { UsageError } from '../shared/errors.ts'
import { formatHelp, parseFlags, splitList, type FlagSpec } from './flags.ts'

const SPEC: FlagSpec = {
  token: { type: 'string', description: 'join token or file' },
  ttl: { type: 'duration', default: '30m', description: 'token lifetime' },
  'ca-pin': { type: 'list', description: 'CA pins' },
  roles: { type: 'list', default: ['node'] },
  insecure: { type: 'boolean' },
  port: { type: 'string', short: 'p', default: '22' },
  verbose: { type: 'boolean', short: 'v' },
}
const COMMAND = 'warren start'

function errorOf(fn: () => unknown): Error | undefined {
  try {
    fn()
  } catch (err) {
    return err as Error
  }
  return undefined
}

t.test('defaults when nothing is given', async (t) => {
  const { flags, args } = parseFlags([], SPEC, COMMAND)
  t.same(flags, { ttl: 30 * 60_000, roles: ['node'], insecure: false, port: '22', verbose: false })
  t.same(args, [])
})

t.test('--name=value and --name value', async (t) => {
  const { flags } = parseFlags(['--token=abc', '--port', '2222', '--ttl', '5m', '--ca-pin=sha256:aa, sha256:bb,,'], SPEC, COMMAND)
  t.equal(flags.token, 'abc')
  t.equal(flags.port, '2222')
  t.equal(flags.ttl, 300_000)
  t.same(flags['ca-pin'], ['sha256:aa', 'sha256:bb'], 'dashed key, items trimmed, empties dropped')
})

t.test('a value may contain "="', async (t) => {
  t.equal(parseFlags(['--token=a=b'], SPEC, COMMAND).flags.token, 'a=b')
})

t.test('booleans', async (t) => {
  t.equal(parseFlags(['--insecure'], SPEC, COMMAND).flags.insecure, true)
  t.equal(parseFlags(['--insecure=false'], SPEC, COMMAND).flags.insecure, false)
  t.equal(parseFlags(['--insecure=true'], SPEC, COMMAND).flags.insecure, true)
  t.equal(parseFlags(['-v'], SPEC, COMMAND).flags.verbose, true)
  const { flags, args } = parseFlags(['--insecure', 'false'], SPEC, COMMAND)
  t.equal(flags.insecure, true, 'a boolean never takes the next argument')
  t.same(args, ['false'])
  t.match(errorOf(() => parseFlags(['--insecure=maybe'], SPEC, COMMAND)), { message: 'flag --insecure takes true or false, not "maybe"' })
})

t.test('short aliases', async (t) => {
  t.equal(parseFlags(['-p', '22022'], SPEC, COMMAND).flags.port, '22022')
  t.equal(parseFlags(['-p=8022'], SPEC, COMMAND).flags.port, '8022')
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

t.test('unknown flags are refused with the command name', async (t) => {
  const err = errorOf(() => parseFlags(['--foo'], SPEC, 'warrenctl tokens ls'))
  t.type(err, UsageError)
  t.equal(err?.message, 'unknown flag --foo for "warrenctl tokens ls"')
  t.equal(errorOf(() => parseFlags(['--foo=1'], SPEC, 'warrenctl tokens ls'))?.message, 'unknown flag --foo for "warrenctl tokens ls"')
  t.equal(errorOf(() => parseFlags(['-x'], SPEC, COMMAND))?.message, 'unknown flag -x for "warren start"')
})

t.test('a missing value is refused', async (t) => {
  const err = errorOf(() => parseFlags(['--ttl'], SPEC, COMMAND))
  t.type(err, UsageError)
  t.equal(err?.message, 'flag --ttl needs a value')
  t.equal(errorOf(() => parseFlags(['--token', '--insecure'], SPEC, COMMAND))?.message, 'flag --token needs a value')
  t.equal(errorOf(() => parseFlags(['-p'], SPEC, COMMAND))?.message, 'flag --port needs a value')
  t.equal(parseFlags(['--token=-abc'], SPEC, COMMAND).flags.token, '-abc', 'a dash value can be written inline')
  t.equal(parseFlags(['--token='], SPEC, COMMAND).flags.token, '', 'an explicit empty value is a value')
})

t.test('durations are checked and the error names the flag', async (t) => {
  const err = errorOf(() => parseFlags(['--ttl=5x'], SPEC, COMMAND))
  t.type(err, UsageError)
  t.equal(err?.message, 'invalid duration "5x" for --ttl: use a number with a unit, e.g. 30s, 5m, 1h')
})

t.test('--help and -h are understood unless the spec claims them', async (t) => {
  t.equal(parseFlags(['--help'], SPEC, COMMAND).flags.help, true)
  t.equal(parseFlags(['-h'], SPEC, COMMAND).flags.help, true)
  const withHost: FlagSpec = { host: { type: 'string', short: 'h' } }
  t.equal(parseFlags(['-h', 'x'], withHost, COMMAND).flags.host, 'x')
  t.equal(parseFlags(['--help'], withHost, COMMAND).flags.help, true)
})

t.test('splitList', async (t) => {
  t.same(splitList(' a, b ,,c,'), ['a', 'b', 'c'])
  t.same(splitList(''), [])
})

t.test('formatHelp lists flags with descriptions and defaults', async (t) => {
  const help = formatHelp(COMMAND, SPEC, '[flags]')
  t.equal(
    help,
    [
      'Usage: warren start [flags]',
      '',
      'Flags:',
      '      --token=STRING  join token or file',
      '      --ttl=DURATION  token lifetime (default 30m)',
      '      --ca-pin=A,B    CA pins',
      '      --roles=A,B     (default node)',
      '      --insecure',
      '  -p, --port=STRING   (default 22)',
      '  -v, --verbose',
      '',
    ].join('\n'),
  )
  t.match(formatHelp(COMMAND, { max: { type: 'duration', default: 90_000 } }, ''), /--max=DURATION  \(default 1m30s\)/)
  t.match(formatHelp(COMMAND, {}, 'warren start --token=T'), /^Usage: warren start --token=T\n$/)
})
