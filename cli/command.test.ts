import t from 'tap'
import { UsageError } from '../shared/errors.ts'
import { defineCommand, formatHelp } from './command.ts'

/** What `fn` writes to standard output. */
async function stdoutOf(fn: () => Promise<unknown>): Promise<{ text: string; result: unknown }> {
  const write = process.stdout.write
  let text = ''
  process.stdout.write = ((chunk: string) => {
    text += chunk
    return true
  }) as typeof process.stdout.write
  try {
    return { result: await fn(), text }
  } finally {
    process.stdout.write = write
  }
}

function example() {
  const runs: { flags: unknown; args: string[] }[] = []
  const command = defineCommand({
    name: 'warrenctl things add',
    summary: 'add a thing',
    operands: ['NAME', '[MORE...]'],
    flags: {
      ttl: { type: 'duration', default: 90 * 60_000, description: 'how long it lives' },
      kind: { type: 'enum', values: ['big', 'small'], default: 'small', description: 'its size' },
      tags: { type: 'list', noun: 'tag', description: 'labels for it' },
      out: { type: 'path', placeholder: 'DIR', defaultText: '~/.things', description: 'where it goes' },
      force: { type: 'boolean', short: 'f', description: 'replace one' },
    },
    common: { title: 'Flags of every warrenctl command:', flags: { 'data-dir': { type: 'path', placeholder: 'DIR', description: 'the data dir' } } },
    description: 'A thing is kept\n    until it expires.',
    examples: ['warrenctl things add cup --ttl=1h'],
    run(flags, args) {
      runs.push({ flags, args })
      return 0
    },
  })
  return { command, runs }
}

t.test('the help shows the usage, every flag with its default, the common flags and an example', async (t) => {
  const { command } = example()
  t.equal(
    command.help(),
    [
      'Usage: warrenctl things add [flags] NAME [MORE...]',
      '',
      'Add a thing.',
      '',
      'A thing is kept until it expires.',
      '',
      'Flags:',
      '      --ttl=DURATION    how long it lives (default: 1h30m)',
      '      --kind=big|small  its size (default: small)',
      '      --tags=TAG,..     labels for it',
      '      --out=DIR         where it goes (default: ~/.things)',
      '  -f, --force           replace one',
      '  -h, --help            show this help',
      '',
      'Flags of every warrenctl command:',
      '      --data-dir=DIR    the data dir',
      '',
      'Example:',
      '  warrenctl things add cup --ttl=1h',
      '',
    ].join('\n'),
  )
  t.equal(formatHelp(command.spec), command.help())
})

t.test('--help and -h print the help and never run the command, whatever else is given', async (t) => {
  for (const argv of [['--help'], ['cup', '-h'], ['--kind=huge', '--help'], ['--nonsense', '-h']]) {
    const { command, runs } = example()
    const { text, result } = await stdoutOf(() => command.run(argv))
    t.equal(result, 0, argv.join(' '))
    t.equal(text, command.help())
    t.same(runs, [], 'not run')
  }
})

t.test('flags and arguments reach the command typed; wrong counts are usage errors', async (t) => {
  const { command, runs } = example()
  await command.run(['cup', 'saucer', '--kind=big', '-f', '--data-dir=/d'])
  t.same(runs, [{ flags: { ttl: 90 * 60_000, kind: 'big', force: true, 'data-dir': '/d' }, args: ['cup', 'saucer'] }])
  const missing = await command.run([]).catch((error: Error) => error)
  t.type(missing, UsageError)
  t.match(missing, { message: '"warrenctl things add" needs a NAME argument' })
  const { command: noArgs } = { command: defineCommand({ name: 'warren version', summary: 'the version', flags: {}, examples: ['warren version'], run: () => 0 }) }
  t.match(await noArgs.run(['extra']).catch((error: Error) => error), { message: 'unexpected argument "extra" for "warren version"' })
})

t.test('a command that runs another stops reading flags at its first argument', async (t) => {
  const seen: string[][] = []
  const ssh = defineCommand({
    name: 'warren ssh',
    summary: 'log in',
    operands: ['login@node', '[command...]'],
    flags: { port: { type: 'string', short: 'p', description: 'port' } },
    flagsEndAtFirstArgument: true,
    examples: ['warren ssh root@pi ls -l'],
    run: (_flags, args) => void seen.push(args),
  })
  await ssh.run(['-p', '22', 'root@pi', 'ls', '-l', '--help'])
  t.same(seen, [['root@pi', 'ls', '-l', '--help']], "the remote command's --help is its own")
})
