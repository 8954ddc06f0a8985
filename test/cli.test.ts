// The command line as a person meets it: every command and subcommand of warren and
// warrenctl answers --help, -h and "help COMMAND" with its full usage and exit 0 without
// acting, even when the rest of the line would act; every malformed value exits 2 naming
// the flag; a reader that stops early ends a command quietly. The cluster's state is read
// before and after through the admin API.

import { spawn } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { Program } from '../cli/program.ts'
import { WARREN } from '../cli/warren.ts'
import { WARRENCTL } from '../cli/warrenctl.ts'
import { AuthProcess, ROOT, type RunResult, run, startNode, tempDir, waitForNode } from './helpers/cluster.ts'

t.setTimeout(300_000)

// Static tokens enough for "tokens ls" to print more than a pipe holds (64 KiB on Linux)
// and a reader takes in one read, so that a write meets the pipe closed.
const STATIC_TOKENS = 6000
const staticTokens = Array.from({ length: STATIC_TOKENS }, (_, i) => `"node:static-token-${String(i).padStart(8, '0')}"`)
const auth = await new AuthProcess({ authServiceYaml: `  tokens: [${staticTokens.join(', ')}]` }).start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const token = await auth.token()
const nodeDir = tempDir()
const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${auth.address}`, `--token=${token}`, `--ca-pin=${pin}`, '--nodename=pi-help', '--labels=env=own,rack=r1'])
t.teardown(() => node.stop())
await waitForNode(auth, 'pi-help')
for (const name of ['alice', 'carol']) await auth.api('POST', '/v1/users', { name, logins: ['root'] })
const { id: lockId } = await auth.api<{ id: string }>('POST', '/v1/locks', { user: 'carol' })
await auth.api('POST', '/v1/roles', { kind: 'role', version: 'v1', metadata: { name: 'lab' }, spec: { allow: { logins: ['{{internal.logins}}'], node_labels: { env: 'lab' } } } })
const roleFile = join(tempDir(), 'role.yaml')
writeFileSync(roleFile, 'kind: role\nversion: v1\nmetadata: { name: help-role }\n')

const warren = (args: string[]): Promise<RunResult> => run(join(ROOT, 'cli/warren.ts'), args)
const warrenctl = (args: string[]): Promise<RunResult> => run(join(ROOT, 'cli/warrenctl.ts'), args)
const dataDir = `--data-dir=${auth.dataDir}`

/** What a command would change: tokens, the CAs and their rotation, users, roles, nodes and their assigned labels, locks. */
async function backend(): Promise<unknown> {
  const status = await auth.api<{ host_ca: unknown; user_ca: unknown }>('GET', '/v1/status')
  const { nodes } = await auth.api<{ nodes: { nodename: string; host_id: string; status?: string; assigned_labels?: Record<string, string> }[] }>('GET', '/v1/nodes?all=true')
  return {
    tokens: await auth.api('GET', '/v1/tokens'),
    cas: [status.host_ca, status.user_ca],
    users: await auth.api('GET', '/v1/users'),
    roles: await auth.api('GET', '/v1/roles'),
    nodes: nodes.map((n) => [n.nodename, n.host_id, n.status, n.assigned_labels]),
    locks: await auth.api('GET', '/v1/locks'),
  }
}

// Paths a command would create if it acted.
const signOut = join(tempDir(), 'creds')
const startDir = join(tempDir(), 'data')
const installRoot = join(tempDir(), 'root')
const backupOut = join(tempDir(), 'backup.db')

/** For each command, arguments that make it act (or try to) when no help is asked. */
const ACTING: Record<string, Record<string, string[]>> = {
  warrenctl: {
    status: [dataDir],
    'nodes add': ['--ttl=5m', dataDir],
    'nodes ls': [dataDir],
    'nodes rm': ['pi-help', dataDir],
    'nodes label': ['pi-help', 'env=acted', '--remove=site', dataDir],
    'tokens add': ['--type=node', '--labels=env=acted', dataDir],
    'tokens ls': [dataDir],
    'tokens rm': [token, dataDir],
    'tokens del': [token, dataDir],
    'users add': ['bob', '--logins=root', dataDir],
    'users ls': [dataDir],
    'users rm': ['alice', dataDir],
    'users reset': ['alice', dataDir],
    'auth sign': ['--user=alice', `--out=${signOut}`, '--format=openssh', dataDir],
    'auth rotate': ['--type=host', '--grace-period=1h', dataDir],
    lock: ['--user=alice', '--ttl=1h', dataDir],
    'lock ls': [dataDir],
    'lock rm': [lockId, dataDir],
    'audit ls': ['--since=1h', dataDir],
    'recordings ls': [dataDir],
    'recordings get': ['3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21', dataDir],
    create: ['-f', roleFile, dataDir],
    get: ['roles', dataDir],
    rm: ['role/lab', dataDir],
    backup: [backupOut, dataDir],
    // Refused while the auth server runs, as it tries to act.
    restore: [backupOut, dataDir],
    help: ['nodes', 'add'],
    version: [],
  },
  warren: {
    start: ['--roles=node', `--data-dir=${startDir}`, `--auth-server=${auth.address}`, `--token=${token}`, `--ca-pin=${pin}`, '--nodename=help-node'],
    status: [`--data-dir=${nodeDir}`],
    ls: ['env=lab'],
    play: ['3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21'],
    ssh: ['root@pi-help', 'true'],
    'proxy ssh': ['root@pi-help'],
    'proxy port': ['pi-help', 'webui'],
    login: [`--proxy=${auth.address}`, `--ca-pin=${pin}`, '--user=alice'],
    logout: [],
    'known-hosts': ['pi-help'],
    install: [`--prefix=${installRoot}`, `--token=${token}`, `--auth-server=${auth.address}`, `--ca-pin=${pin}`],
    help: ['start'],
    version: [],
  },
}

async function commandNames(program: Program): Promise<string[]> {
  return [...Object.keys(program.commands), 'help', 'version'].sort()
}

for (const [program, runProgram] of [
  [WARRENCTL, warrenctl],
  [WARREN, warren],
] as const) {
  t.test(`${program.name}: --help, -h and help COMMAND on every command print its usage and act not`, async (t) => {
    const cases = ACTING[program.name]
    t.same(Object.keys(cases).sort(), await commandNames(program), 'a case for every command')
    const before = await backend()
    for (const [name, args] of Object.entries(cases)) {
      const words = name.split(' ')
      const command = program.commands[name] ? await program.commands[name]() : undefined
      const flags = command ? Object.keys({ ...command.spec.flags, ...command.spec.common?.flags }) : []
      // warren ssh reads flags only before login@node (what follows is the remote command's).
      const atEnd = name === 'ssh' ? [...words, '--help', ...args] : [...words, ...args, '--help']
      const forms = [[...words, '-h', ...args], atEnd, ['help', ...words]]
      const results = await Promise.all(forms.map((argv) => runProgram(argv)))
      const outputs: string[] = []
      for (const [i, argv] of forms.entries()) {
        const result = results[i]
        t.equal(result.code, 0, `${program.name} ${argv.join(' ')}: ${result.stderr}`)
        t.ok(result.stdout.startsWith(`Usage: ${program.name} ${name} `), `${argv.join(' ')} prints the usage of ${name}`)
        for (const flag of flags) t.ok(result.stdout.includes(`--${flag}`), `${name}: the help names --${flag}`)
        t.match(result.stdout, /\nExamples?:\n {2}\S/, `${name}: the help has an example`)
        t.equal(result.stderr, '')
        outputs.push(result.stdout)
      }
      t.ok(
        outputs.every((output) => output === outputs[0]),
        `${name}: the same help every way it is asked`,
      )
    }
    t.same(await backend(), before, 'tokens, CAs, users, roles, nodes and locks as they were')
    for (const path of [signOut, startDir, installRoot, backupOut]) t.notOk(existsSync(path), `${path} not created`)
  })
}

t.test('the program alone, --help and help list the commands', async (t) => {
  for (const [runProgram, name] of [
    [warren, 'warren'],
    [warrenctl, 'warrenctl'],
  ] as const) {
    const bare = await runProgram([])
    t.equal(bare.code, 2, `${name} alone is a usage error`)
    for (const argv of [['--help'], ['-h'], ['help']]) {
      const result = await runProgram(argv)
      t.equal(result.code, 0, `${name} ${argv.join(' ')}`)
      t.equal(result.stdout, bare.stdout, 'the same list')
    }
    t.match(bare.stdout, new RegExp(`^Usage: ${name} COMMAND`))
    t.match(bare.stdout, /^ {2}version {2,}print the version/m)
  }
  const group = await warrenctl(['nodes', '--help'])
  t.equal(group.code, 0)
  t.match(group.stdout, /^ {2}nodes add .*\n {2}nodes ls .*\n {2}nodes rm /m, 'a group lists its commands')
  t.match(group.stdout, /^ {2}nodes label {2,}assign labels to a node/m)
  t.equal((await warrenctl(['nodes'])).code, 2, 'a group without its command is a usage error')
  const version = await warrenctl(['version'])
  t.equal(version.code, 0)
  t.match(version.stdout, /^Warren v\d+\.\d+\.\d+ node v24\.\S+ commit \S+\n$/)
  t.equal(version.stdout, (await warren(['version'])).stdout, 'warrenctl version is warren version')
})

t.test('a malformed value, a misspelt flag or command, a wrong argument: exit 2 naming it', async (t) => {
  const before = await backend()
  const cases: [(args: string[]) => Promise<RunResult>, string[], RegExp][] = [
    [warrenctl, ['tokens', 'add', '--type=nod', dataDir], /unknown role "nod" for --type: did you mean node\?/],
    [warrenctl, ['tokens', 'add', '--type=node,root', dataDir], /unknown role "root" for --type: use auth, proxy, node/],
    [warrenctl, ['nodes', 'add', '--roles=nodes', dataDir], /unknown role "nodes" for --roles: did you mean node\?/],
    [warrenctl, ['nodes', 'add', '--ttl=5x', dataDir], /invalid duration "5x" for --ttl/],
    [warrenctl, ['nodes', 'add', '--ttl', dataDir], /flag --ttl needs a value/],
    [warrenctl, ['nodes', 'add', '--single-use=yes', dataDir], /flag --single-use takes no value/],
    [warrenctl, ['nodes', 'ad', dataDir], /unknown command "warrenctl nodes ad": did you mean add\?/],
    [warrenctl, ['tokns', 'ls', dataDir], /unknown command "warrenctl tokns": did you mean tokens\?/],
    [warrenctl, ['tokens', 'ls', '--with_secrets', dataDir], /unknown flag --with_secrets for "warrenctl tokens ls": did you mean --with-secrets\?/],
    [warrenctl, ['tokens', 'rm', dataDir], /"warrenctl tokens rm" needs a TOKEN argument/],
    [warrenctl, ['auth', 'rotate', '--type=hots', dataDir], /unknown --type "hots": did you mean host\? \(use host or user\)/],
    [warrenctl, ['auth', 'rotate', '--manual', '--phase=bogus', dataDir], /unknown --phase "bogus": use init, update_clients, update_servers, standby or rollback/],
    [warrenctl, ['auth', 'rotate', '--grace-period=soon', dataDir], /invalid duration "soon" for --grace-period/],
    [warrenctl, ['auth', 'rotate', '--phase=init', dataDir], /--phase goes with --manual/],
    [warrenctl, ['auth', 'sign', '--user=alice', `--out=${signOut}`, '--format=ssh', dataDir], /unknown --format "ssh": use warren or openssh/],
    [warrenctl, ['auth', 'sign', '--user=alice', `--out=${signOut}`, '--ttl=1d', dataDir], /invalid duration "1d" for --ttl/],
    [warrenctl, ['users', 'add', 'bob', dataDir], /missing --logins/],
    [warrenctl, ['lock', '--user=alice', '--ttl=-5m', dataDir], /invalid duration "-5m" for --ttl: must be more than zero/],
    [warrenctl, ['lock', 'rm', lockId, 'extra', dataDir], /unexpected argument "extra" for "warrenctl lock rm"/],
    [warrenctl, ['tokens', 'add', '--type=proxy', '--labels=env=lab', dataDir], /--labels assigns labels .* must grant the node role \(--type=node\)/],
    [warrenctl, ['nodes', 'add', '--labels=env=lab,=x', dataDir], /invalid label "=x": use key=value/],
    [warrenctl, ['nodes', 'label', 'pi-help', dataDir], /nothing to change: give KEY=VALUE to assign a label, or --remove=KEY to remove one/],
    [warrenctl, ['nodes', 'label', 'pi-help', 'env=lab', '--remove=site,env', dataDir], /label "env" is both assigned and removed/],
    [warrenctl, ['nodes', 'label', 'pi-help', 'env:lab', dataDir], /invalid label "env:lab": use key=value/],
    [warren, ['start', `--ca_pin=${pin}`], /unknown flag --ca_pin for "warren start": did you mean --ca-pin\?/],
    [warren, ['start', '--roles=nodes', `--data-dir=${startDir}`], /unknown role "nodes" for --roles: did you mean node\?/],
    [warren, ['status', '--format=yml', `--data-dir=${nodeDir}`], /unknown --format "yml": use text or json/],
    [warren, ['install', `--prefix=${installRoot}`, '--tokn=x'], /unknown flag --tokn for "warren install": did you mean --token\?/],
    [warren, ['ssh', '--identity'], /flag --identity needs a value/],
    [warren, ['proxy', 'port', 'pi-help'], /"warren proxy port" needs a NAME argument/],
    [warren, ['proxy', 'sh', 'root@pi-help'], /unknown command "warren proxy sh": did you mean ssh\?/],
    [warren, ['version', 'extra'], /unexpected argument "extra" for "warren version"/],
    // Empty values (an unset shell variable): never a name, a path or the working directory.
    [warrenctl, ['users', 'add', '', '--logins=root', dataDir], /the NAME argument of "warrenctl users add" is empty/],
    [warrenctl, ['nodes', 'rm', ' ', dataDir], /the \w+ argument of "warrenctl nodes rm" is empty/],
    [warrenctl, ['tokens', 'rm', '', dataDir], /the TOKEN argument of "warrenctl tokens rm" is empty/],
    [warrenctl, ['lock', '--user=', dataDir], /--user is empty: give the user to lock/],
    [warrenctl, ['auth', 'sign', '--user=alice', '--out=', dataDir], /--out is empty: give a path/],
  ]
  // Three at a time: each is a process of its own.
  const results: RunResult[] = []
  for (let i = 0; i < cases.length; i += 3) results.push(...(await Promise.all(cases.slice(i, i + 3).map(([runProgram, args]) => runProgram(args)))))
  for (const [i, [, args, message]] of cases.entries()) {
    const result = results[i]
    t.equal(result.code, 2, args.join(' '))
    t.match(result.stderr, new RegExp(`^ERROR: ${message.source}`), args.join(' '))
    t.equal(result.stdout, '')
  }
  t.same(await backend(), before, 'nothing changed')
  for (const path of [signOut, startDir, installRoot]) t.notOk(existsSync(path), `${path} not created`)
})

t.test('warrenctl tokens ls | head -1: the command ends quietly with status 0', async (t) => {
  const head = spawn('head', ['-n', '1'], { stdio: ['pipe', 'pipe', 'ignore'] })
  const headClosed = new Promise((resolve) => head.once('close', resolve))
  let read = ''
  head.stdout.on('data', (chunk) => (read += chunk))
  const child = spawn(process.execPath, [join(ROOT, 'cli/warrenctl.ts'), 'tokens', 'ls', dataDir], { stdio: ['ignore', head.stdin, 'pipe'] })
  head.stdin.destroy() // the pipe's write end is the command's alone, as in a shell
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const code = await new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))
  await headClosed
  t.match(read, /^Token\s+Type\s+Expiry Time \(UTC\)\n$/, 'head printed the first line')
  t.ok(STATIC_TOKENS * 35 > 3 * 65536, 'the listing is more than the pipe and head take in')
  t.equal(code, 0)
  t.equal(stderr, '', 'no error, no stack trace')
})

t.test("warrenctl nodes label: assigned labels win over the node's own in nodes ls, and go again", async (t) => {
  const labelled = await warrenctl(['nodes', 'label', 'pi-help', 'env=lab', 'site=kitchen', dataDir])
  t.equal(labelled.code, 0, labelled.stderr)
  t.match(labelled.stdout, /^Node pi-help \([0-9a-f-]{36}\) now has the assigned labels env=lab,site=kitchen\n$/)
  const [all, table] = await Promise.all([warrenctl(['nodes', 'ls', '--all', dataDir]), warrenctl(['nodes', 'ls', dataDir])])
  t.match(all.stdout, /^Node Name .*\s+Proxies\s+Labels\s+Assigned\n/, '--all: an Assigned column once a node has some')
  t.match(all.stdout, /^pi-help\s.*\senv=lab,rack=r1,site=kitchen\s+env=lab,site=kitchen\n/m, 'the labels as the cluster judges the node, then the assigned ones')
  t.match(table.stdout, /^pi-help\s+\S+\s+\S+\s+env=lab,rack=r1,site=kitchen\n/m, 'nodes ls: the labels as the cluster judges the node')
  const removed = await warrenctl(['nodes', 'label', 'pi-help', '--remove=env,site', dataDir])
  t.equal(removed.code, 0, removed.stderr)
  t.match(removed.stdout, /^Node pi-help \(\S+\) now has no assigned labels\n$/)
  const after = (await warrenctl(['nodes', 'ls', '--all', dataDir])).stdout
  t.notMatch(after, /Assigned/, 'no Assigned column when no node has any')
  t.match(after, /^pi-help\s.*\senv=own,rack=r1\n/m, "the node's own labels count again")
})
