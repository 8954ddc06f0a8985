// The socket of a forwarded agent is the login's own, in a directory only the login may
// enter, and goes when the session ends — made with no more privilege than the packaged
// node unit gives (no CAP_CHOWN, no CAP_DAC_OVERRIDE): the node runs here under setpriv with
// the unit's CapabilityBoundingSet. ssh -A end to end is test/forwarding-options.test.ts.

import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { NODE_UNIT } from '../packaging/systemd/units.ts'

const NOBODY = 65534
const skip = process.getuid?.() !== 0 ? 'needs root (switching users)' : spawnSync('setpriv', ['--version']).status !== 0 ? 'setpriv is not installed (util-linux)' : false

/** The unit's capabilities in setpriv's form: `-all,+setuid,...`. */
function boundingSet(unit: string): string {
  const caps = /^CapabilityBoundingSet=(.+)$/m.exec(unit)![1].trim().split(/\s+/)
  return ['-all', ...caps.map((cap) => `+${cap.replace(/^CAP_/, '').toLowerCase()}`)].join(',')
}

t.test("under the node unit's capabilities, the socket is the login's, mode 0700 around it, removed at close", { skip }, async (t) => {
  const script = join(t.testdir(), 'agent-socket.ts')
  writeFileSync(
    script,
    `
    import { existsSync, statSync } from 'node:fs'
    import { dirname } from 'node:path'
    import { setTimeout as sleep } from 'node:timers/promises'
    import { listenForAgent } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, 'ssh-agent-forwarding.ts')).href)}
    const account = { name: 'nobody', uid: ${NOBODY}, gid: ${NOBODY}, home: '/', shell: '/bin/sh' }
    const agent = await listenForAgent({}, account, new Set())
    const socket = statSync(agent.path)
    const dir = statSync(dirname(agent.path))
    agent.close()
    for (let tries = 0; tries < 100 && existsSync(dirname(agent.path)); tries++) await sleep(50)
    process.stdout.write(JSON.stringify({ socketUid: socket.uid, isSocket: socket.isSocket(), dirUid: dir.uid, dirMode: dir.mode & 0o7777, removed: !existsSync(dirname(agent.path)) }))
    process.exit(0)
    `,
  )
  // A clean environment: the test runner's NODE_OPTIONS would load its hooks into the node.
  const child = spawn('setpriv', [`--bounding-set=${boundingSet(NODE_UNIT)}`, process.execPath, script], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const code = await new Promise((resolve) => child.once('exit', resolve))
  t.equal(code, 0, stderr)
  t.same(JSON.parse(stdout), { socketUid: NOBODY, isSocket: true, dirUid: NOBODY, dirMode: 0o700, removed: true })
})
