// A fleet's devices are imaged with one token that never expires: a static token from the
// auth server's config. Written in its long form it assigns labels, as a token of `warrenctl
// tokens add --labels` does: a device imaged for the lab that labels itself env=prod is still
// env=lab to the cluster, and the prod user whose role selects env=prod cannot reach it.
// Real processes and real OpenSSH.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { AuthProcess, openssh, ProxyProcess, ROOT, run, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'

const FLEET_TOKEN = 'lab-fleet-token-0123456789abcdef'

t.test('a node joining with a static token that assigns labels carries them, over its own', async (t) => {
  const tokenFile = join(tempDir(), 'fleet-token')
  writeFileSync(tokenFile, `${FLEET_TOKEN}\n`, { mode: 0o600 })
  const auth = await new AuthProcess({ authServiceYaml: `  tokens:\n    - { roles: [node], token: ${tokenFile}, labels: { env: lab } }` }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())

  const listedTokens = JSON.parse((await auth.ctl(['tokens', 'ls', '--format=json'])).stdout) as { static: boolean; labels?: Record<string, string> }[]
  t.same(listedTokens.find((token) => token.static)?.labels, { env: 'lab' }, 'tokens ls shows the labels the static token assigns')

  const role = 'kind: role\nversion: v1\nmetadata:\n  name: prod\nspec:\n  allow:\n    logins: ["{{internal.logins}}"]\n    node_labels:\n      env: prod\n'
  const created = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], { input: role })
  t.equal(created.code, 0, `the prod role is created ${created.stderr.trim()}`)
  const prodUser = await signUser(auth, proxy.web, 'paul', 'prod')
  const labUser = await signUser(auth, proxy.web, 'lena', 'access')

  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(config, ['version: v1', `data_dir: ${dir}`, 'labels: { env: prod, room: "2" }', 'ssh_service:', '  listen_addr: 127.0.0.1:0'].join('\n'))
  const node = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${FLEET_TOKEN}`, `--ca-pin=${pin}`, '--nodename=imaged-1'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'imaged-1')

  const listing = async (args: string[]) =>
    JSON.parse((await auth.ctl(['nodes', 'ls', '--format=json', ...args])).stdout) as { labels: Record<string, string>; assigned_labels?: Record<string, string> }[]
  t.same((await listing([]))[0]?.labels, { env: 'lab', room: '2' }, 'env as the token assigns it, its other labels its own')
  t.same((await listing(['--all']))[0]?.assigned_labels, { env: 'lab' }, 'the assigned one shown apart')

  const refused = await openssh(prodUser, [`${testLogin()}@imaged-1`, 'echo reached'])
  t.equal(refused.stdout, '', 'the prod user does not reach the device that calls itself prod')
  t.not(refused.code, 0, 'ssh fails')
  const reached = await openssh(labUser, [`${testLogin()}@imaged-1`, 'echo reached'])
  t.equal(reached.stdout, 'reached\n', `a user who may reach it does (${reached.stderr.trim()})`)
})
