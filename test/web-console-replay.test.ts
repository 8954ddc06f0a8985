// A recording made to take down the browser that replays it: a user's stock `ssh -tt`
// through Warren from a terminal of 60000×60000 cells, then resized to 65000×65000 (an SSH
// client asks for any window size, and the node records what it was asked). An editor
// replays it in Debian's chromium: the replay runs to its end on a screen of at most
// 1000×1000, with the session's output on it.

import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { RecordingJson } from '../shared/protocol/recordings.ts'
import { chromiumMissing, waitForLine } from './helpers/browser.ts'
import { signUser } from './helpers/cluster.ts'
import { startConsoleCluster } from './helpers/console-cluster.ts'
import { until } from './helpers/until.ts'

if (chromiumMissing()) t.plan(0, chromiumMissing() as string)
else await main()

async function main(): Promise<void> {
  t.setTimeout(180_000)
  const { auth, proxy, base, login, node, invited } = await startConsoleCluster((stop) => t.teardown(stop))
  await node('rec-1', { env: 'lab' })

  await t.test('a recording of a huge terminal replays to its end on a bounded screen', async (t) => {
    const profile = await signUser(auth, proxy.web, 'mallet')
    // ssh in a terminal of its own (script's), sized before ssh starts and resized while it runs.
    const command = `stty cols 60000 rows 60000; exec ssh -tt -F ${join(profile, 'ssh_config')} -o BatchMode=yes ${login}@rec-1`
    const script = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let output = ''
    script.stdout.on('data', (data) => (output += data))
    const exited = once(script, 'exit')
    script.stdin.write('echo ready-$((1+1))\n')
    await until('the shell on the node', () => output.includes('ready-2'), { timeoutMs: 30_000 })
    const ssh = readFileSync(`/proc/${script.pid}/task/${script.pid}/children`, 'utf8').trim().split(' ')[0]
    const tty = readlinkSync(`/proc/${ssh}/fd/0`)
    execFileSync('stty', ['-F', tty, 'cols', '65000', 'rows', '65000'])
    script.stdin.write('sleep 1; echo size-$(stty size | tr " " x); echo attack-$((6*7))\n')
    await until('the resized shell', () => output.includes('size-65000x65000'), { timeoutMs: 30_000 })
    script.stdin.write('exit\n')
    await exited

    let recording: RecordingJson | undefined
    await until('the recording on the auth server', async () => {
      const listed = JSON.parse((await auth.ctl(['recordings', 'ls', '--format=json'])).stdout) as RecordingJson[]
      recording = listed.find((r) => r.user === 'mallet' && r.complete)
      return recording !== undefined
    })
    const cast = (await auth.ctl(['recordings', 'get', recording!.session_id])).stdout
    t.match(cast.split('\n')[0], /"width":60000/, 'the recording carries the huge size')
    t.match(cast, /"r","65000x65000"/, 'and the resize')

    // An editor, logged in by accepting the invitation.
    const { page } = await invited('erin', 'access,editor')
    await page.goto(`${base}/web/recordings/${recording!.session_id}`)
    await page.selectOption('#replay-speed', '8', { timeout: 10_000 })
    await page.locator('[data-replay="ended"]').waitFor({ timeout: 30_000 })
    t.ok(await waitForLine(page, (line) => line === 'attack-42', 10_000, '#replay'), 'the replayed output is on the screen')
    const rows = await page.$$eval('#replay .xterm-rows > div', (lines) => lines.length)
    t.ok(rows <= 1000, `the screen has at most 1000 rows (${rows})`)
  })
}
