// `warren ssh LOGIN@SELECTOR COMMAND`: the command on every node the user may reach that
// matches the selectors, in parallel (at most --max-parallel at once), each through the
// system's OpenSSH client as `warren ssh` runs it for one node. Every output line comes out
// whole, prefixed with its node's name, stdout lines on stdout and stderr lines on stderr;
// then a summary of each node's exit status on stderr, so that stdout carries only what the
// nodes printed.

import { spawn } from 'node:child_process'
import { WarrenError } from '../shared/errors.ts'
import { printable } from '../shared/printable.ts'
import type { PresentNode } from '../shared/protocol/admin.ts'
import { formatTable } from './table.ts'

/** How many nodes run the command at once unless --max-parallel says otherwise. */
export const DEFAULT_MAX_PARALLEL = 32

/** How one node's run ended: its command's exit status, or why it has none. */
export interface NodeOutcome {
  node: string
  /** The remote command's exit status; 255 is OpenSSH's own failure (the node could not be reached). */
  code: number | null
  signal: NodeJS.Signals | null
}

/**
 * Writes complete lines of a stream, each prefixed, and keeps a partial line until its end
 * arrives (or the stream ends: then it is written with a newline of its own), so that lines
 * of nodes running side by side never mix.
 */
export class LinePrefixer {
  private readonly prefix: string
  private readonly write: (text: string) => void
  private pending = ''

  constructor(prefix: string, write: (text: string) => void) {
    this.prefix = prefix
    this.write = write
  }

  push(chunk: string): void {
    const text = this.pending + chunk
    const end = text.lastIndexOf('\n')
    if (end === -1) {
      this.pending = text
      return
    }
    this.pending = text.slice(end + 1)
    this.write(
      text
        .slice(0, end)
        .split('\n')
        .map((line) => `${this.prefix}${line}\n`)
        .join(''),
    )
  }

  end(): void {
    if (this.pending !== '') this.write(`${this.prefix}${this.pending}\n`)
    this.pending = ''
  }
}

/** What a node's outcome says in the summary. */
export function describeOutcome(outcome: NodeOutcome): string {
  if (outcome.signal) return `failed: ssh was killed by ${outcome.signal}`
  if (outcome.code === 0) return 'ok (exit status 0)'
  if (outcome.code === 255) return 'failed: ssh could not run the command there (exit status 255)'
  return `failed (exit status ${outcome.code})`
}

export const failed = (outcome: NodeOutcome) => outcome.code !== 0 || outcome.signal !== null

/** The summary: a table of every node and its outcome, and a line saying how many failed and which. */
export function formatSummary(outcomes: readonly NodeOutcome[]): string {
  const table = formatTable(
    ['Node Name', 'Result'],
    outcomes.map((outcome) => [outcome.node, describeOutcome(outcome)]),
  )
  const bad = outcomes.filter(failed)
  const nodes = `${outcomes.length} node${outcomes.length === 1 ? '' : 's'}`
  // The names come from the cluster's listing: escaped, like the table's.
  const last = bad.length === 0 ? `Succeeded on all ${nodes}.` : `Failed on ${bad.length} of ${nodes}: ${bad.map((outcome) => printable(outcome.node)).join(', ')}`
  return `${table}${last}\n`
}

/** Where the nodes' output lines go. */
export interface FleetOutput {
  stdout: (text: string) => void
  stderr: (text: string) => void
}

const PROCESS_OUTPUT: FleetOutput = { stdout: (text) => process.stdout.write(text), stderr: (text) => process.stderr.write(text) }

/** Runs `ssh` with `argsFor(node)` on every node, at most `maxParallel` at once; the outcomes in the nodes' order. */
export async function runOnNodes(
  nodes: readonly PresentNode[],
  maxParallel: number,
  argsFor: (node: PresentNode) => string[],
  output: FleetOutput = PROCESS_OUTPUT,
): Promise<NodeOutcome[]> {
  const outcomes: NodeOutcome[] = new Array(nodes.length)
  let next = 0
  const worker = async () => {
    while (next < nodes.length) {
      const index = next++
      outcomes[index] = await runOne(nodes[index], argsFor(nodes[index]), output)
    }
  }
  await Promise.all(Array.from({ length: Math.min(maxParallel, nodes.length) }, worker))
  return outcomes
}

function runOne(node: PresentNode, args: string[], output: FleetOutput): Promise<NodeOutcome> {
  // The name is the cluster's, escaped; what the command prints is passed on as it is, as ssh does.
  const prefix = `[${printable(node.nodename)}] `
  const out = new LinePrefixer(prefix, output.stdout)
  const err = new LinePrefixer(prefix, output.stderr)
  const child = spawn('ssh', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => out.push(chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => err.push(chunk))
  return new Promise((resolve, reject) => {
    child.on('error', (error) => reject(new WarrenError(`cannot run the OpenSSH client "ssh": ${error.message}`)))
    // 'close': the child's output is all read, so its last lines come before the summary.
    child.on('close', (code, signal) => {
      out.end()
      err.end()
      resolve({ node: node.nodename, code, signal })
    })
  })
}
