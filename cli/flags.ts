// Command-line flags on node:util's parseArgs (strict), with what it leaves to us: durations,
// comma-separated lists, values from a fixed set, paths that start with ~, a one-value flag
// given twice, and errors that name the flag and the closest valid spelling. Strict because a mistyped flag on a join
// command should stop the command, not be ignored while the device joins with the wrong
// settings.

import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { parseDuration } from '../shared/duration.ts'
import { UsageError } from '../shared/errors.ts'
import { closest, didYouMean } from '../shared/suggest.ts'

interface FlagBase {
  description: string
  short?: string
  /** What stands for the value in help (`--out=DIR`); by default from the type. */
  placeholder?: string
  /** The default as help shows it, for one the command works out itself (`~/.warren`). */
  defaultText?: string
}

/** One flag. A flag with a `default` (or a boolean) always has a value; others may be absent. */
export type FlagDef =
  | (FlagBase & { type: 'boolean' })
  | (FlagBase & { type: 'string'; default?: string })
  /** A file or directory: a leading `~` is the home directory, also where the shell left it (`--out=~/x`). */
  | (FlagBase & { type: 'path'; default?: string })
  /** Go's notation (`30s`, `1h30m`); the value is in milliseconds. */
  | (FlagBase & { type: 'duration'; default?: number })
  /** One value of `values`. `noun` names what they are in errors (`unknown role "x"`). */
  | (FlagBase & { type: 'enum'; values: readonly string[]; default?: string; noun?: string })
  /** `a,b` or the flag repeated; with `values`, each item must be one of them. */
  | (FlagBase & { type: 'list'; default?: readonly string[]; values?: readonly string[]; noun?: string })

export type FlagSpec = Record<string, FlagDef>

type ValueOf<F> = F extends { type: 'boolean' }
  ? boolean
  : F extends { type: 'duration' }
    ? number
    : F extends { type: 'enum'; values: readonly (infer V)[] }
      ? V
      : F extends { type: 'list'; values: readonly (infer V)[] }
        ? V[]
        : F extends { type: 'list' }
          ? string[]
          : string

type AlwaysSet<F> = F extends { type: 'boolean' } ? true : F extends { default: unknown } ? true : false

/** The values a spec yields, keyed by the dashed flag name (`flags['ca-pin']`). */
export type FlagValues<S extends FlagSpec> = { -readonly [K in keyof S as AlwaysSet<S[K]> extends true ? K : never]: ValueOf<S[K]> } & {
  -readonly [K in keyof S as AlwaysSet<S[K]> extends true ? never : K]?: ValueOf<S[K]>
}

/** Declares a spec with its literal types kept, so that FlagValues can follow it. */
export function defineFlags<const S extends FlagSpec>(spec: S): S {
  return spec
}

export const HELP_FLAG = { type: 'boolean', short: 'h', description: 'show this help' } as const satisfies FlagDef

export interface ParsedFlags<S extends FlagSpec> {
  flags: FlagValues<S>
  args: string[]
}

/**
 * Whether `argv` asks for help (`--help` or `-h` among its flags): then the command prints
 * its usage and does nothing else, whatever the other flags say. `flagsEnd` is where the
 * flags stop (see flagsEndAt).
 */
export function wantsHelp(argv: string[], spec: FlagSpec, flagsEnd = argv.length): boolean {
  const { tokens } = parseArgs({ args: argv.slice(0, flagsEnd), options: parseArgsOptions(spec), strict: false, allowPositionals: true, tokens: true })
  return tokens.some((token) => token.kind === 'option' && token.name === 'help')
}

/**
 * Splits `argv` into typed flag values and positional arguments. Errors are UsageErrors
 * that name the flag (`unknown flag --ca_pin for "warren start": did you mean --ca-pin?`).
 * Flags stop at `--`, and at `flagsEnd` when given (what follows is all arguments).
 */
export function parseFlags<S extends FlagSpec>(argv: string[], spec: S, command: string, flagsEnd = argv.length): ParsedFlags<S> {
  const flagArgs = argv.slice(0, flagsEnd)
  const options = parseArgsOptions(spec)
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] }
  try {
    parsed = parseArgs({ args: flagArgs, options, strict: true, allowPositionals: true })
  } catch (error) {
    throw explain(flagArgs, spec, command) ?? new UsageError(`${(error as Error).message.split('\n')[0]} (${JSON.stringify(command)})`)
  }
  const repeated = repeatedFlag(flagArgs, spec)
  if (repeated !== undefined) {
    // Taking the last (or the first) would act on a value the user may not have meant:
    // `--ttl=1h --ttl=5m` from a script that appends its own flags, say. Values stay out of
    // the message: a repeated --token would print the token.
    throw new UsageError(`flag --${repeated} is given more than once for ${JSON.stringify(command)}: give it once`)
  }
  const flags: Record<string, unknown> = {}
  for (const [name, flag] of Object.entries(spec)) {
    const given = parsed.values[name]
    const value = given === undefined ? defaultOf(flag) : convert(name, flag, given)
    if (value !== undefined) flags[name] = value
  }
  const rest = argv.slice(argv[flagsEnd] === '--' ? flagsEnd + 1 : flagsEnd)
  return { flags: flags as FlagValues<S>, args: [...parsed.positionals, ...rest] }
}

/**
 * The index of the first argument that is not a flag or a flag's value: where the flags of
 * a command that runs another command end (`warren ssh -p 22 root@pi ls -l`).
 */
export function flagsEndAt(argv: string[], spec: FlagSpec): number {
  const takesValue = (arg: string) => {
    const name = arg.startsWith('--') ? arg.slice(2) : Object.keys(spec).find((key) => spec[key].short === arg.slice(1))
    return name !== undefined && spec[name] !== undefined && spec[name].type !== 'boolean'
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--') return i
    if (!arg.startsWith('-') || arg === '-') return i
    if (!arg.includes('=') && takesValue(arg)) i++
  }
  return argv.length
}

/** `a, b,,c` → `['a', 'b', 'c']`: items trimmed, empty items dropped. */
export function splitList(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
}

/** A leading `~` or `~/` is the home directory; any other path is left as it is. */
export function expandHome(path: string): string {
  if (path === '~') return homedir()
  return path.startsWith('~/') ? join(homedir(), path.slice(2)) : path
}

function parseArgsOptions(spec: FlagSpec): Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {}
  const all: FlagSpec = { ...spec, help: HELP_FLAG }
  for (const [name, flag] of Object.entries(all)) {
    options[name] = { type: flag.type === 'boolean' ? 'boolean' : 'string', ...(flag.short ? { short: flag.short } : {}), ...(flag.type === 'list' ? { multiple: true } : {}) }
  }
  return options
}

/**
 * The first flag that takes one value but is given more than once (`--ttl=1h --ttl=5m`, or
 * `-p 22 --port=2222`), if any. Lists add up when repeated and a boolean says the same thing
 * each time, so neither counts.
 */
function repeatedFlag(argv: string[], spec: FlagSpec): string | undefined {
  const { tokens } = parseArgs({ args: argv, options: parseArgsOptions(spec), strict: false, allowPositionals: true, tokens: true })
  const seen = new Set<string>()
  for (const token of tokens) {
    if (token.kind !== 'option') continue
    const flag = spec[token.name]
    if (flag === undefined || flag.type === 'boolean' || flag.type === 'list') continue
    if (seen.has(token.name)) return token.name
    seen.add(token.name)
  }
  return undefined
}

function defaultOf(flag: FlagDef): unknown {
  if (flag.type === 'boolean') return false
  if (flag.type === 'list') return flag.default === undefined ? undefined : [...flag.default]
  if (flag.type === 'path' && flag.default !== undefined) return expandHome(flag.default)
  return flag.default
}

function convert(name: string, flag: FlagDef, given: string | boolean | (string | boolean)[]): unknown {
  if (flag.type === 'boolean') return given === true
  const values = (Array.isArray(given) ? given : [given]).map(String)
  // A flag that takes one value is given once (repeatedFlag): this is that value.
  const text = values[0]
  switch (flag.type) {
    case 'string':
      return text
    case 'path':
      // An empty path (an unset shell variable, say) would mean the working directory.
      if (text.trim() === '') throw new UsageError(`--${name} is empty: give a path`)
      return expandHome(text)
    case 'duration':
      return parseDuration(text, `--${name}`)
    case 'enum':
      return checkValue(name, flag, text)
    case 'list': {
      const items = values.flatMap(splitList)
      return flag.values === undefined ? items : items.map((item) => checkValue(name, flag, item))
    }
  }
}

function checkValue(name: string, flag: { values?: readonly string[]; noun?: string }, value: string): string {
  const values = flag.values ?? []
  if (values.includes(value)) return value
  const subject = flag.noun ? `${flag.noun} ${JSON.stringify(value)} for --${name}` : `--${name} ${JSON.stringify(value)}`
  const choices = `use ${values.slice(0, -1).join(', ')}${values.length > 1 ? ' or ' : ''}${values[values.length - 1]}`
  const guess = closest(value, values)
  throw new UsageError(guess === undefined ? `unknown ${subject}: ${choices}` : `unknown ${subject}: did you mean ${guess}? (${choices})`)
}

/** Why strict parsing refused `argv`, in words that name the flag. */
function explain(argv: string[], spec: FlagSpec, command: string): UsageError | undefined {
  const { tokens } = parseArgs({ args: argv, options: parseArgsOptions(spec), strict: false, allowPositionals: true, tokens: true })
  for (const token of tokens) {
    if (token.kind !== 'option') continue
    const flag = spec[token.name]
    if (flag === undefined && token.name !== 'help') {
      const long = token.rawName.startsWith('--')
      const guess = long ? closest(token.name, Object.keys(spec)) : undefined
      return new UsageError(`unknown flag ${token.rawName} for ${JSON.stringify(command)}${didYouMean(guess && `--${guess}`)}`)
    }
    if (flag === undefined || flag.type === 'boolean') {
      if (token.inlineValue) return new UsageError(`flag --${token.name} takes no value: give it alone, as --${token.name}`)
      continue
    }
    // A following flag is not taken as the value: `--token --ttl=5m` is a forgotten value.
    // A value that really starts with a dash can be written `--token=-abc`.
    if (token.value === undefined || (!token.inlineValue && token.value.length > 1 && token.value.startsWith('-'))) {
      return new UsageError(`flag --${token.name} needs a value`)
    }
  }
  return undefined
}
