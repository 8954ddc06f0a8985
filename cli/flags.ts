// A small, strict command-line flag parser. Strict because a mistyped flag on a join command
// should stop the command, not be ignored while the device joins with the wrong settings.

import { UsageError } from '../shared/errors.ts'
import { formatDuration, parseDuration } from '../shared/duration.ts'

export type FlagType = 'string' | 'boolean' | 'duration' | 'list'

export interface FlagSpec {
  [name: string]: { type: FlagType; default?: unknown; description?: string; short?: string }
}

export interface Parsed {
  /**
   * Values keyed by the dashed flag name (`flags['ca-pin']`). Booleans are always present
   * (false unless given); other flags only when given or defaulted. Durations are in ms,
   * lists are string arrays, and a repeated list flag adds to the list.
   */
  flags: Record<string, any>
  args: string[]
}

const BOOLEAN_WORDS: Record<string, boolean> = { true: true, false: false }

/**
 * Splits `argv` into flags (per `spec`) and positional arguments. `command` is the full
 * command name, used in errors (`unknown flag --foo for "warrenctl tokens ls"`).
 * `--help` and `-h` are understood for every command (as `flags.help`) unless the spec
 * gives them another meaning.
 */
export function parseFlags(argv: string[], spec: FlagSpec, command: string): Parsed {
  const byShort = new Map<string, string>()
  for (const [name, flag] of Object.entries(spec)) if (flag.short) byShort.set(flag.short, name)
  const helpBuiltIn = !('help' in spec)
  const helpShortBuiltIn = helpBuiltIn && !byShort.has('h')

  const flags: Record<string, any> = defaults(spec)
  const args: string[] = []
  // The first time a list flag is given it replaces the default; later times add to it.
  const listsGiven = new Set<string>()

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--') {
      args.push(...argv.slice(i + 1))
      break
    }
    if (!arg.startsWith('-') || arg === '-') {
      args.push(arg)
      continue
    }

    const long = arg.startsWith('--')
    const eq = arg.indexOf('=')
    const written = eq === -1 ? arg : arg.slice(0, eq)
    const inline = eq === -1 ? undefined : arg.slice(eq + 1)
    const key = written.slice(long ? 2 : 1)
    const name = long ? key : byShort.get(key)

    if (name === undefined || !(name in spec)) {
      const isHelp = long ? key === 'help' && helpBuiltIn : key === 'h' && helpShortBuiltIn
      if (isHelp && inline === undefined) {
        flags.help = true
        continue
      }
      throw new UsageError(`unknown flag ${written} for ${JSON.stringify(command)}`)
    }

    const flag = spec[name]
    if (flag.type === 'boolean') {
      if (inline === undefined) {
        flags[name] = true
      } else if (inline in BOOLEAN_WORDS) {
        flags[name] = BOOLEAN_WORDS[inline]
      } else {
        throw new UsageError(`flag --${name} takes true or false, not ${JSON.stringify(inline)}`)
      }
      continue
    }

    let value = inline
    if (value === undefined) {
      const next = argv[i + 1]
      // A following flag is not taken as the value: `--token --ttl=5m` is a forgotten value.
      // A value that really starts with a dash can be written `--token=-abc`.
      if (next === undefined || (next.startsWith('-') && next !== '-')) {
        throw new UsageError(`flag --${name} needs a value`)
      }
      value = next
      i++
    }
    if (flag.type === 'duration') {
      flags[name] = parseDuration(value, `--${name}`)
    } else if (flag.type === 'list') {
      flags[name] = [...(listsGiven.has(name) ? flags[name] : []), ...splitList(value)]
      listsGiven.add(name)
    } else {
      flags[name] = value
    }
  }
  return { flags, args }
}

function defaults(spec: FlagSpec): Record<string, any> {
  const flags: Record<string, any> = {}
  for (const [name, flag] of Object.entries(spec)) {
    if (flag.default !== undefined) {
      flags[name] = flag.type === 'duration' && typeof flag.default === 'string'
        ? parseDuration(flag.default, `--${name}`)
        : Array.isArray(flag.default) ? [...flag.default] : flag.default
    } else if (flag.type === 'boolean') {
      flags[name] = false
    }
  }
  return flags
}

/** `a, b,,c` → `['a', 'b', 'c']`: items trimmed, empty items dropped. */
export function splitList(text: string): string[] {
  return text.split(',').map((item) => item.trim()).filter((item) => item !== '')
}

/**
 * Help text for a command: the usage line, then one line per flag with its description and
 * default. `usageLine` may be the whole line or only what follows the command name.
 */
export function formatHelp(command: string, spec: FlagSpec, usageLine: string): string {
  const usage = usageLine.startsWith(command) ? usageLine : `${command} ${usageLine}`.trimEnd()
  const lines = [`Usage: ${usage}`]
  const entries = Object.entries(spec)
  if (entries.length > 0) {
    const names = entries.map(([name, flag]) => {
      const placeholder = flag.type === 'boolean' ? '' : `=${flag.type === 'list' ? 'A,B' : flag.type.toUpperCase()}`
      return `${flag.short ? `-${flag.short}, ` : '    '}--${name}${placeholder}`
    })
    const width = Math.max(...names.map((name) => name.length))
    lines.push('', 'Flags:')
    entries.forEach(([, flag], i) => {
      const text = [flag.description ?? '', describeDefault(flag.type, flag.default)].filter(Boolean).join(' ')
      lines.push(`  ${names[i].padEnd(width)}  ${text}`.trimEnd())
    })
  }
  return lines.join('\n') + '\n'
}

function describeDefault(type: FlagType, value: unknown): string {
  if (value === undefined || value === false) return ''
  if (Array.isArray(value)) return value.length > 0 ? `(default ${value.join(',')})` : ''
  if (type === 'duration' && typeof value === 'number') return `(default ${formatDuration(value)})`
  return `(default ${String(value)})`
}
