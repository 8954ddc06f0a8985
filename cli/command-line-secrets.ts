// A secret given on the command line (a join token, an invitation) shows in `ps` and in
// /proc/PID/cmdline to every local user for as long as the process runs, and a sign-up
// waits at the terminal for minutes. So a command that takes one rewrites its process
// title without it the moment it starts (on Linux the title is the memory those files
// read). The few milliseconds before that are why the printed commands also offer
// standard input where they can.

/** `args` without `--NAME=VALUE` or `--NAME VALUE` (nothing after `--` is a flag). */
export function withoutFlag(args: string[], name: string): string[] {
  const kept: string[] = []
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--') return [...kept, ...args.slice(i)]
    if (args[i]!.startsWith(`--${name}=`)) continue
    if (args[i] === `--${name}`) {
      i++
      continue
    }
    kept.push(args[i]!)
  }
  return kept
}

/** Takes the value of `--NAME` out of what `ps` shows of this process (`command`: `warren` or `warrenctl`), when the command line has one. */
export function hideFlagValue(name: string, command = 'warren'): void {
  // argv[1] is the script, or in the single executable its own path once more.
  const args = process.argv.slice(2)
  const shown = withoutFlag(args, name)
  if (shown.length === args.length) return
  process.title = [command, ...shown, `--${name}=…`].join(' ')
}
