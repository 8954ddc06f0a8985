// Credentials a user can carry: path flags expand a leading ~ (also in --out=~/x, which the
// shell leaves alone), auth sign writes to ~/.warren by default, and the directory it writes
// works when copied into another home, with the system's ssh from any working directory and
// the warren on PATH (test/helpers/cluster.ts puts one there).

import { execFile } from 'node:child_process'
import { cpSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import t from 'tap'
import { AuthProcess, ProxyProcess, ROOT, type RunResult, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'

t.setTimeout(300_000)

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
t.teardown(() => proxy.stop())
const nodeDir = tempDir()
const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-carry'])
t.teardown(() => node.stop())
await waitForNode(auth, 'pi-carry')
const login = testLogin()
await auth.ctl(['users', 'add', 'alice', `--logins=${login}`])

/** A command run in `cwd` with HOME=`home`, as a user's shell would run it. */
function runAs(command: string, args: string[], home: string, cwd: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const env = { ...process.env, HOME: home, WARREN_HOME: '' }
    const child = execFile(command, args, { cwd, env, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr })
    })
    child.stdin?.end()
  })
}
const node24 = process.execPath
const warrenctl = (args: string[], home: string, cwd: string) => runAs(node24, [join(ROOT, 'cli/warrenctl.ts'), ...args, `--data-dir=${auth.dataDir}`], home, cwd)
const warren = (args: string[], home: string, cwd: string) => runAs(node24, [join(ROOT, 'cli/warren.ts'), ...args], home, cwd)
const CREDENTIALS = ['host_ca.pem', 'id_ed25519', 'id_ed25519-cert.pub', 'id_ed25519.pub', 'known_hosts', 'profile.json', 'ssh_config', 'tls.crt', 'tls.key']

t.test('path flags expand a leading ~, also after =', async (t) => {
  const home = tempDir('warren-home-')
  const cwd = tempDir()
  const inline = await warrenctl(['auth', 'sign', '--user=alice', '--out=~/creds', '--format=openssh', `--proxy=${proxy.web}`], home, cwd)
  t.equal(inline.code, 0, inline.stderr)
  t.same(readdirSync(join(home, 'creds')).sort(), CREDENTIALS)
  const spaced = await warrenctl(['auth', 'sign', '--user=alice', '--out', '~/other'], home, cwd)
  t.equal(spaced.code, 0, spaced.stderr)
  t.ok(existsSync(join(home, 'other', 'profile.json')))
  t.same(readdirSync(cwd), [], 'no directory named ~ in the working directory')

  const viaTilde = await warren(['ssh', '--identity=~/creds', `${login}@pi-carry`, 'echo tilde'], home, cwd)
  t.equal(viaTilde.code, 0, viaTilde.stderr)
  t.equal(viaTilde.stdout, 'tilde\n')

  // The data dirs of warrenctl and warren status, given from a home that holds them.
  const status = await runAs(node24, [join(ROOT, 'cli/warrenctl.ts'), 'status', `--data-dir=~/${basename(auth.dataDir)}`], dirname(auth.dataDir), cwd)
  t.equal(status.code, 0, status.stderr)
  t.match(status.stdout, /^Cluster\s+test-cluster$/m)
  const nodeStatus = await warren(['status', `--data-dir=~/${basename(nodeDir)}`, '--format=json'], dirname(nodeDir), cwd)
  t.equal(nodeStatus.code, 0, nodeStatus.stderr)
  t.equal(JSON.parse(nodeStatus.stdout).node.nodename, 'pi-carry')
})

t.test('auth sign writes to ~/.warren by default, and a copy of it in another home reaches a node', async (t) => {
  const first = tempDir('warren-home-')
  const signed = await warrenctl(['auth', 'sign', '--user=alice', '--format=openssh', `--proxy=${proxy.web}`], first, tempDir())
  t.equal(signed.code, 0, signed.stderr)
  t.same(readdirSync(join(first, '.warren')).sort(), CREDENTIALS)
  const config = readFileSync(join(first, '.warren', 'ssh_config'), 'utf8')
  t.match(config, /^ {4}IdentityFile \$\{HOME\}\/\.warren\/id_ed25519$/m, 'files named from the home directory')
  t.match(config, new RegExp(`^ {4}ProxyCommand warren proxy ssh '--identity=~/\\.warren' --proxy=${proxy.web} %r@%h:%p$`, 'm'), 'warren from PATH')
  t.notOk(config.includes(first), 'the home it was written in is not named')
  t.notOk(config.includes(process.execPath) || config.includes('node_modules'), "nor this checkout's Node")

  const laptop = tempDir('warren-home-')
  cpSync(join(first, '.warren'), join(laptop, '.warren'), { recursive: true })
  rmSync(first, { recursive: true, force: true })
  const elsewhere = tempDir()
  const ssh = await runAs('ssh', ['-F', join(laptop, '.warren', 'ssh_config'), '-o', 'BatchMode=yes', `${login}@pi-carry`, 'echo copied'], laptop, elsewhere)
  t.equal(ssh.code, 0, ssh.stderr)
  t.equal(ssh.stdout, 'copied\n')
})

t.test('credentials in a directory whose path has a space, a quote and a %: warren ssh and a stock ssh log in', async (t) => {
  const home = tempDir('warren-home-')
  const cwd = tempDir()
  for (const out of [join(tempDir(), "o'brien's 50% creds"), "~/it's 100% mine"]) {
    const dir = out.startsWith('~/') ? join(home, out.slice(2)) : out
    const signed = await warrenctl(['auth', 'sign', '--user=alice', `--out=${out}`, '--format=openssh', `--proxy=${proxy.web}`], home, cwd)
    t.equal(signed.code, 0, signed.stderr)
    const viaWarren = await warren(['ssh', `--identity=${dir}`, `${login}@pi-carry`, 'echo warren'], home, cwd)
    t.same({ code: viaWarren.code, stdout: viaWarren.stdout }, { code: 0, stdout: 'warren\n' }, `warren ssh with ${JSON.stringify(dir)}`, { stderr: viaWarren.stderr })
    const stock = await runAs('ssh', ['-F', join(dir, 'ssh_config'), '-o', 'BatchMode=yes', `${login}@pi-carry`, 'echo stock'], home, cwd)
    t.same({ code: stock.code, stdout: stock.stdout }, { code: 0, stdout: 'stock\n' }, `ssh -F with the ssh_config of ${JSON.stringify(dir)}`, { stderr: stock.stderr })
  }
})
