// A command of `warren` or `warrenctl`: its flags, arguments, help text and what it does.
// The help is answered here, before the command's code runs, so `--help` never acts.

import { formatDuration } from '../shared/duration.ts'
import { UsageError } from '../shared/errors.ts'
import { type FlagDef, type FlagSpec, type FlagValues, flagsEndAt, HELP_FLAG, parseFlags, wantsHelp } from './flags.ts'

export interface CommandSpec<F extends FlagSpec, C extends FlagSpec> {
  /** The whole command as typed: `warrenctl nodes add`. */
  name: string
  /** One line, for the list of commands. */
  summary: string
  /** Its arguments as the usage line shows them: `NODE`, `[command...]` (optional in brackets, `...` for any number). */
  operands?: readonly string[]
  flags: F
  /** Flags that every command of the program takes, listed apart in the help. */
  common?: { title: string; flags: C }
  /** The flags end at the first argument: what follows it belongs to another command (`warren ssh`). */
  flagsEndAtFirstArgument?: boolean
  /** More about the command, after the usage line. */
  description?: string
  examples: readonly string[]
}

export interface Command {
  readonly spec: CommandSpec<FlagSpec, FlagSpec>
  /** The full usage: every flag with its default, and examples. */
  help(): string
  /** Prints the help for --help or -h, else checks the flags and arguments and runs. */
  run(argv: string[]): Promise<number | undefined>
}

type Run<F extends FlagSpec> = (flags: FlagValues<F>, args: string[]) => Promise<number | undefined> | number | undefined

// `C = {}`: a command without common flags adds no keys to its own.
export function defineCommand<const F extends FlagSpec, const C extends FlagSpec = Record<never, never>>(def: CommandSpec<F, C> & { run: Run<F & C> }): Command {
  const spec = { ...def.flags, ...def.common?.flags } as F & C
  return {
    spec: def,
    help: () => formatHelp(def),
    async run(argv) {
      const flagsEnd = def.flagsEndAtFirstArgument ? flagsEndAt(argv, spec) : argv.length
      if (wantsHelp(argv, spec, flagsEnd)) {
        process.stdout.write(formatHelp(def))
        return 0
      }
      const { flags, args } = parseFlags(argv, spec, def.name, flagsEnd)
      checkArguments(def, args)
      return def.run(flags, args)
    },
  }
}

function checkArguments(spec: CommandSpec<FlagSpec, FlagSpec>, args: string[]): void {
  const operands = spec.operands ?? []
  const required = operands.filter((operand) => !operand.startsWith('['))
  const max = operands.some((operand) => operand.includes('...')) ? Infinity : operands.length
  if (args.length < required.length) {
    const missing = required[args.length]
    throw new UsageError(`"${spec.name}" needs ${/^[AEIOU]/i.test(missing) ? 'an' : 'a'} ${missing} argument`)
  }
  if (args.length > max) throw new UsageError(`unexpected argument "${args[max]}" for "${spec.name}"`)
  // An empty name (an unset shell variable, say) is a mistake, never a name: the API would
  // refuse it in words about its own fields, or find no such endpoint. What follows a
  // `...` operand (a remote command) is passed on as it is.
  for (const [index, operand] of operands.entries()) {
    if (operand.includes('...')) break
    const arg = args[index]
    if (arg !== undefined && arg.trim() === '') throw new UsageError(`the ${operand.replace(/^\[|\]$/g, '')} argument of "${spec.name}" is empty`)
  }
}

const WIDTH = 100

/** The help of a command: usage line, summary, description, flags with defaults, examples. */
export function formatHelp(spec: CommandSpec<FlagSpec, FlagSpec>): string {
  const usage = [spec.name, '[flags]', ...(spec.operands ?? [])].join(' ')
  const lines = [`Usage: ${usage}`, '', ...wrap(sentence(spec.summary), WIDTH)]
  if (spec.description) lines.push('', ...spec.description.split('\n\n').flatMap((paragraph, i) => [...(i > 0 ? [''] : []), ...wrap(paragraph.replace(/\s*\n\s*/g, ' '), WIDTH)]))
  const sections: [string, FlagSpec][] = [['Flags:', { ...spec.flags, help: HELP_FLAG }]]
  if (spec.common && Object.keys(spec.common.flags).length > 0) sections.push([spec.common.title, spec.common.flags])
  const rows = sections.flatMap(([, flags]) => Object.entries(flags).map(([name, flag]) => flagName(name, flag)))
  const column = Math.min(Math.max(...rows.map((row) => row.length)), 34) + 4
  for (const [title, flags] of sections) {
    lines.push('', title)
    for (const [name, flag] of Object.entries(flags)) {
      const left = `  ${flagName(name, flag)}`
      const text = [flag.description, describeDefault(flag)].filter(Boolean).join(' ')
      const [first, ...rest] = wrap(text, WIDTH - column)
      if (left.length + 2 > column) lines.push(left, ...[first, ...rest].map((line) => ' '.repeat(column) + line))
      else lines.push(left.padEnd(column) + first, ...rest.map((line) => ' '.repeat(column) + line))
    }
  }
  lines.push('', spec.examples.length > 1 ? 'Examples:' : 'Example:', ...spec.examples.map((example) => `  ${example}`))
  return lines.join('\n') + '\n'
}

function flagName(name: string, flag: FlagDef): string {
  const value = flag.type === 'boolean' ? '' : `=${flag.placeholder ?? placeholder(flag)}`
  return `${flag.short ? `-${flag.short}, ` : '    '}--${name}${value}`
}

function placeholder(flag: FlagDef): string {
  switch (flag.type) {
    case 'enum':
      return flag.values.join('|')
    case 'list':
      return `${(flag.noun ?? 'value').toUpperCase()},..`
    case 'boolean':
    case 'string':
      return 'VALUE'
    default:
      return flag.type.toUpperCase()
  }
}

function describeDefault(flag: FlagDef): string {
  if (flag.defaultText !== undefined) return `(default: ${flag.defaultText})`
  if (flag.type === 'boolean' || flag.default === undefined) return ''
  if (flag.type === 'duration')
    return `(default: ${formatDuration(flag.default)
      .replace(/(?<=[hm])0s$/, '')
      .replace(/(?<=h)0m$/, '')})`
  if (flag.type === 'list') return flag.default.length > 0 ? `(default: ${flag.default.join(',')})` : ''
  return `(default: ${flag.default})`
}

function sentence(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? '' : '.')
}

/** Words in lines of at most `width` characters (a longer word gets a line of its own). */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else {
      line = line === '' ? word : `${line} ${word}`
    }
  }
  return [...lines, line]
}
