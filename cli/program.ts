// `warren` and `warrenctl` as a table of commands of one or two words (`status`, `nodes
// add`): which one the arguments name, the list of commands, `help COMMAND` and `version`.

import { UsageError } from '../shared/errors.ts'
import { closest, didYouMean } from '../shared/suggest.ts'
import { type Command, defineCommand, wrap } from './command.ts'
import { versionLine } from './version.ts'

export interface Program {
  name: string
  /** What the program is for, under its usage line. */
  summary: string
  /** Each command by its words after the program's name; loaded when it runs or is listed. */
  commands: Record<string, () => Promise<Command>>
  /** Lines for the list of commands that are not in `commands` (`warren ctl`). */
  extraListing?: [string, string][]
}

const HELP_WORDS = ['--help', '-h']

/** Runs the command that `argv` names; help and version are built in. */
export async function runProgram(program: Program, argv: string[]): Promise<number | undefined> {
  if (argv.length === 0) {
    process.stdout.write(await listing(program))
    return 2
  }
  if (HELP_WORDS.includes(argv[0])) {
    process.stdout.write(await listing(program))
    return 0
  }
  if (argv[0] === '--version') return builtIns(program).version.run([])
  const found = await find(program, argv)
  if (found.command) return found.command.run(argv.slice(found.words))
  // A group's name alone (`warrenctl nodes`) lists its commands; with --help, as asked.
  process.stdout.write(await listing(program, argv[0]))
  return HELP_WORDS.includes(argv[1]) ? 0 : 2
}

/** The command `argv` names and how many of its words name it; or the group it starts (`nodes`). */
async function find(program: Program, argv: string[]): Promise<{ command?: Command; words: number }> {
  const commands: Record<string, () => Promise<Command>> = { ...program.commands }
  for (const [name, command] of Object.entries(builtIns(program))) commands[name] = async () => command
  const two = `${argv[0]} ${argv[1] ?? ''}`
  if (commands[two]) return { command: await commands[two](), words: 2 }
  if (commands[argv[0]]) return { command: await commands[argv[0]](), words: 1 }
  const group = Object.keys(commands).filter((name) => name.startsWith(`${argv[0]} `))
  if (group.length === 0) {
    const firstWords = [...new Set(Object.keys(commands).map((name) => name.split(' ')[0]))]
    throw new UsageError(`unknown command "${program.name} ${argv[0]}"${didYouMean(closest(argv[0], firstWords))} (run "${program.name} help" for the list)`)
  }
  const sub = argv[1]
  if (sub === undefined || HELP_WORDS.includes(sub)) return { words: 1 }
  const subWords = group.map((name) => name.split(' ')[1])
  throw new UsageError(`unknown command "${program.name} ${argv[0]} ${sub}"${didYouMean(closest(sub, subWords))} (run "${program.name} help ${argv[0]}" for the list)`)
}

/** `help [COMMAND]` and `version`, which every program has. */
function builtIns(program: Program): { help: Command; version: Command } {
  return {
    help: defineCommand({
      name: `${program.name} help`,
      summary: `show the usage of a command, or list the commands`,
      operands: ['[COMMAND...]'],
      flags: {},
      examples: [`${program.name} help`, `${program.name} help ${Object.keys(program.commands).find((name) => name.includes(' ')) ?? 'version'}`],
      async run(_flags, words) {
        if (words.length === 0) {
          process.stdout.write(await listing(program))
          return 0
        }
        const { command } = await find(program, words)
        process.stdout.write(command ? command.help() : await listing(program, words[0]))
        return 0
      },
    }),
    version: defineCommand({
      name: `${program.name} version`,
      summary: 'print the version, the Node.js it runs on and the commit it was built from',
      flags: {},
      examples: [`${program.name} version`],
      run() {
        process.stdout.write(versionLine() + '\n')
        return 0
      },
    }),
  }
}

/** The commands of `program`, or of one group of it (`nodes`), a line each. */
async function listing(program: Program, group?: string): Promise<string> {
  const names = Object.keys(program.commands).filter((name) => group === undefined || name.startsWith(`${group} `))
  const rows: [string, string][] = await Promise.all(names.map(async (name) => [name, (await program.commands[name]()).spec.summary] as [string, string]))
  if (group === undefined) {
    rows.push(...(program.extraListing ?? []))
    for (const [name, command] of Object.entries(builtIns(program))) rows.push([name, command.spec.summary])
  }
  const width = Math.max(...rows.map(([name]) => name.length)) + 3
  const lines = [
    `Usage: ${program.name} ${group === undefined ? '' : `${group} `}COMMAND [flags]`,
    '',
    ...(group === undefined ? [...wrap(program.summary, 100), ''] : []),
    'Commands:',
    ...rows.flatMap(([name, summary]) => wrap(summary, 100 - width).map((line, i) => `  ${(i === 0 ? name : '').padEnd(width)}${line}`)),
    '',
    `Run "${program.name} COMMAND --help" (or "${program.name} help COMMAND") for its flags, their defaults and examples.`,
    'Exit status: 0 success, 1 failure, 2 bad usage (an unknown command or flag, a malformed value, a missing argument).',
  ]
  return lines.join('\n') + '\n'
}
