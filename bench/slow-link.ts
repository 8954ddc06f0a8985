// A keystroke's round trip on a device behind a slow link (a cellular or satellite uplink)
// while another session copies a file off it (or, --direction=to, onto it) at the link's
// full speed. The node runs in a
// network namespace of its own, reached over a veth pair whose two ends a token bucket
// (`tc ... tbf`) holds to --rate; the auth server, the proxy and the user's ssh stay on this
// side. Through Warren every session of the device shares the node's one tunnel, so what the
// node (or the proxy, copying to it) has queued for the copy is queued ahead of the
// keystroke or its echo; through OpenSSH (an
// sshd in the same namespace, reached directly) each session is a TCP connection of its own.
//
//   npm run bench:slow-link [-- --rate=2mbit --copy-mb=3 --probe-ms=250 --direction=off|to|both --paths=warren,openssh]
//
// Per path: 20 round trips of 64 bytes through `cat` in an `ssh -tt` session on the idle link,
// then the copy (`head -c` on the node into a second session's standard output, or zeros
// into `cat > /dev/null` on the node; --direction=both: the two at once, each in a session of
// its own) and, from two seconds into it until it ends, one round trip every --probe-ms.
// Reported: the idle p50, and the p50, p90 and largest round trip during the copy, with the
// copy's throughput (both ways: each copy's).
//
// Needs root (network namespaces, tc, sshd) and Debian's iproute2, openssh-server and openssh-client.

import { execFileSync, spawn } from 'node:child_process'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { authAndProxy, freePort, signUser, startNode, tempDir, testLogin, waitForNode } from '../test/helpers/cluster.ts'
import { createSlowLink } from '../test/helpers/slow-link.ts'
import { openInteractive } from './lib/file-copy.ts'
import { median } from './lib/measure.ts'
import { sshdMissing, startSshd } from './lib/sshd.ts'
import { formatTable } from './lib/table.ts'

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '2mbit' },
    'copy-mb': { type: 'string', default: '3' },
    'probe-ms': { type: 'string', default: '250' },
    direction: { type: 'string', default: 'off' },
    paths: { type: 'string', default: 'warren,openssh' },
  },
})
const DIRECTIONS = { off: ['off'], to: ['to'], both: ['off', 'to'] } as const
type Direction = 'off' | 'to'
if (!Object.hasOwn(DIRECTIONS, values.direction)) throw new Error(`--direction is "off" (a copy off the node), "to" (onto it) or "both", not "${values.direction}"`)
const COPIES: readonly Direction[] = DIRECTIONS[values.direction as keyof typeof DIRECTIONS]
const COPY_BYTES = Math.round(Number(values['copy-mb']) * 1e6)
const PROBE_MS = Number(values['probe-ms'])
const paths = values.paths.split(',')

const missing = sshdMissing()
if (missing) {
  console.error(`bench:slow-link: ${missing}`)
  process.exit(1)
}

// The device's network: a namespace, a veth pair, a token bucket on each end.
const link = createSlowLink()
const { ns, hostSide, deviceSide } = link
link.limit(values.rate)

const login = testLogin()

interface Measured {
  path: string
  idleP50: number
  during: number[]
  /** Per copy, in COPIES' order. */
  copyBytesPerSecond: number[]
}

/** A copy of COPY_BYTES off the node or onto it, in an ssh session of its own. */
function startCopy(path: string, sshArgs: string[], direction: Direction): { finished: () => boolean; done: Promise<number> } {
  const started = performance.now()
  const copy = spawn('ssh', [...sshArgs, direction === 'to' ? 'cat > /dev/null' : `head -c ${COPY_BYTES} /dev/zero`], { stdio: ['pipe', 'pipe', 'pipe'] })
  let copied = 0
  if (direction === 'to') {
    // Counted as the ssh client takes it: the copy ends when the node has read it all.
    const chunk = Buffer.alloc(64 * 1024)
    // An ssh that ends early (EPIPE here) is reported by its exit below, with its error output.
    copy.stdin.on('error', () => {})
    const writeMore = () => {
      while (copied < COPY_BYTES) {
        const piece = chunk.subarray(0, Math.min(chunk.length, COPY_BYTES - copied))
        copied += piece.length
        if (!copy.stdin.write(piece)) return void copy.stdin.once('drain', writeMore)
      }
      copy.stdin.end()
    }
    writeMore()
  } else {
    copy.stdin.end()
    copy.stdout.on('data', (data: Buffer) => (copied += data.length))
  }
  let copyError = ''
  copy.stderr.on('data', (data) => (copyError += data))
  let finished = false
  const done = new Promise<number>((resolve, reject) =>
    copy.once('exit', (code) => {
      finished = true
      if (code !== 0 || copied !== COPY_BYTES) reject(new Error(`${path}: the copy ${direction} the node ended (${code}) with ${copied} of ${COPY_BYTES} bytes: ${copyError}`))
      else resolve(copied / ((performance.now() - started) / 1000))
    }),
  )
  return { finished: () => finished, done }
}

/** Round trips on the idle link, then one every PROBE_MS while `copy` runs (from two seconds in). */
async function measure(path: string, sshArgs: string[]): Promise<Measured> {
  const session = await openInteractive(sshArgs)
  try {
    const idle: number[] = []
    for (let i = 0; i < 20; i++) {
      idle.push((await session.roundTrips(1))[0])
      await sleep(100)
    }
    const copies = COPIES.map((direction) => startCopy(path, sshArgs, direction))
    const rates = Promise.all(copies.map((copy) => copy.done))
    // A failed copy ends the probes too.
    rates.catch(() => {})
    await sleep(2000)
    const during: number[] = []
    while (copies.some((copy) => !copy.finished())) {
      during.push((await session.roundTrips(1))[0])
      await sleep(PROBE_MS)
    }
    return { path, idleP50: median(idle), during, copyBytesPerSecond: await rates }
  } finally {
    await session.close()
  }
}

const results: Measured[] = []
const stops: (() => Promise<unknown>)[] = []
try {
  if (paths.includes('warren')) {
    // Stopped in the reverse order of their teardowns, as the rest of `stops`.
    const { auth, pin, proxy } = await authAndProxy(
      { teardown: (fn) => stops.push(async () => fn()) },
      { webListenAddr: `${hostSide}:${await freePort()}`, tunnelListenAddr: `${hostSide}:${await freePort()}`, debug: false },
    )
    const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=slow-node'], {}, ns)
    stops.push(() => node.stop())
    await waitForNode(auth, 'slow-node', 60_000)
    const profile = await signUser(auth, proxy.web, 'bench')
    console.error('measuring warren')
    results.push(await measure('warren', ['-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', `${login}@slow-node`]))
  }
  if (paths.includes('openssh')) {
    // useradd leaves the password locked ("!"), which sshd without PAM takes for a locked account.
    execFileSync('usermod', ['-p', '*', login])
    const sshd = await startSshd({ forwarding: 'no', listenAddress: deviceSide, netns: ns })
    stops.push(() => sshd.stop())
    const args = [
      '-p',
      String(sshd.port),
      '-i',
      sshd.userKey,
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'LogLevel=ERROR',
    ]
    console.error('measuring openssh')
    results.push(await measure('openssh', [...args, `${login}@${deviceSide}`]))
  }
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {})
}

const ms = (us: number) => (us / 1000).toFixed(1)
const quantile = (values: number[], q: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(q * values.length))]
console.log(
  `\n${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, link ${values.rate} each way (tbf, 400 ms queue), a ${values['copy-mb']} MB copy ${COPIES.map((direction) => (direction === 'to' ? 'onto' : 'off')).join(' and one ')} the node, a round trip every ${PROBE_MS} ms during it\n`,
)
console.log(
  formatTable(
    ['path', 'idle p50 ms', 'copy p50 ms', 'copy p90 ms', 'copy max ms', 'probes', ...COPIES.map((direction) => `copy ${direction} KB/s`)],
    results.map((r) => [
      r.path,
      ms(r.idleP50),
      // A copy over before the first probe (a fast link) has none.
      r.during.length ? ms(median(r.during)) : '-',
      r.during.length ? ms(quantile(r.during, 0.9)) : '-',
      r.during.length ? ms(Math.max(...r.during)) : '-',
      String(r.during.length),
      ...r.copyBytesPerSecond.map((rate) => (rate / 1000).toFixed(0)),
    ]),
  ),
)
const [warren, openssh] = ['warren', 'openssh'].map((path) => results.find((r) => r.path === path))
if (warren?.during.length && openssh?.during.length) {
  console.log(
    `\nwarren ÷ openssh during the copy: p50 ${(median(warren.during) / median(openssh.during)).toFixed(2)}×, p90 ${(quantile(warren.during, 0.9) / quantile(openssh.during, 0.9)).toFixed(2)}×; copy throughput ${COPIES.map((direction, i) => `${direction} ${(warren.copyBytesPerSecond[i]! / openssh.copyBytesPerSecond[i]!).toFixed(2)}×`).join(', ')}`,
  )
}
