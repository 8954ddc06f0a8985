// What a restore says it undoes, from two backends made here record by record: what came
// and went both ways, and nothing said of what a restore does not change (a user from
// before generations given one, a token or lock that has ended by now, labels written
// again unchanged).

import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Command } from '../../cli/command.ts'
import { lock as lockCmd, lockRm } from '../../cli/ctl/locks.ts'
import { nodesLabel, nodesRm, parseLabelChanges } from '../../cli/ctl/nodes.ts'
import { create, rm } from '../../cli/ctl/roles.ts'
import { nodesAdd, tokensAdd, tokensRm } from '../../cli/ctl/tokens.ts'
import { usersAdd, usersReset, usersRm } from '../../cli/ctl/users.ts'
import { parseFlags } from '../../cli/flags.ts'
import { parseLabels } from '../../shared/labels.ts'
import { type UndoneItem, undoneByRestore, undoneItems, undoneLines } from './restore-undone.ts'
import { SqliteBackend } from './sqlite.ts'

const NOW = 1_800_000_000_000
const HOUR = 3_600_000

/** A backend file holding `records` (key: value), those with a ttl ending at NOW + ttl. */
async function backendWith(records: Record<string, unknown>, ttls: Record<string, number> = {}): Promise<string> {
  const path = join(mkdtempSync(join(tmpdir(), 'warren-undone-')), 'backend.db')
  const backend = SqliteBackend.open(path, { clock: () => NOW })
  for (const [key, value] of Object.entries(records)) await backend.put(key, JSON.stringify(value), ttls[key] === undefined ? {} : { ttlMs: ttls[key] })
  backend.close()
  return path
}

const node = (hostId: string, nodename: string) => ({ [`/nodes/${hostId}`]: { hostId, nodename } })
const labels = (hostId: string, assigned: Record<string, string>, changed: number) => ({ [`/assigned-labels/${hostId}`]: { hostId, labels: assigned, changed } })
const token = (hash: string, id: string, more: Record<string, unknown> = {}) => ({ [`/tokens/${hash}`]: { id, roles: ['node'], singleUse: true, static: false, ...more } })
const lock = (id: string, user: string, more: Record<string, unknown> = {}) => ({ [`/locks/${id}`]: { id, target: { user }, created: NOW - HOUR, ...more } })

function line(lines: string[], start: string): string {
  return lines.find((text) => text.startsWith(start)) ?? ''
}

t.test('locks, tokens and assigned labels changed since are said both ways', async (t) => {
  const hosts = { ...node('h1', 'pi-1'), ...node('h2', 'pi-2'), ...node('h3', 'pi-3'), ...node('h4', 'pi-4') }
  const then = await backendWith({
    ...hosts,
    ...labels('h1', { env: 'lab' }, NOW - HOUR),
    ...labels('h3', { env: 'lab' }, NOW - HOUR),
    ...labels('h4', { env: 'lab' }, NOW - HOUR),
    ...lock('lifted', 'alice'),
    ...lock('lifted-ended', 'bob', { expires: NOW - 1 }),
    ...token('aa', 'deleted'),
    ...token('bb', 'deleted-ended', { expires: NOW - 1 }),
    ...token('cc', 'kept'),
  })
  const now = await backendWith({
    ...hosts,
    ...labels('h1', { env: 'prod' }, NOW),
    ...labels('h2', { site: 'berlin' }, NOW),
    ...labels('h3', { env: 'lab' }, NOW),
    ...lock('made', 'carol'),
    ...token('cc', 'kept'),
    ...token('dd', 'made'),
    ...token('ee', 'made-ended', { expires: NOW - 1 }),
    ...token('ff', 'invitation', { user: 'dave', roles: ['signup'] }),
  })
  const lines = undoneByRestore(now, then, NOW)
  t.equal(line(lines, 'locks lifted since are back'), 'locks lifted since are back (warrenctl lock rm ID): user alice (lifted)', 'not one that has ended by now')
  t.equal(line(lines, 'locks made since are gone'), 'locks made since are gone (warrenctl lock): user carol')
  t.equal(
    line(lines, 'tokens used up or deleted since'),
    'tokens used up or deleted since are valid again until they expire (warrenctl tokens rm ID): deleted',
    'not one that has expired by now',
  )
  t.equal(
    line(lines, 'tokens made since are gone'),
    'tokens made since are gone (warrenctl tokens add, or warrenctl nodes add for a node): made',
    "not one expired, nor a user's invitation",
  )
  t.equal(
    line(lines, 'hosts whose assigned labels changed since'),
    'hosts whose assigned labels changed since have their earlier ones again (warrenctl nodes label NAME KEY=VALUE --remove=KEY): pi-1, pi-2, pi-4',
    'changed, assigned and removed; not those written again unchanged',
  )
})

t.test('records that end by their time to live in the backend count as gone', async (t) => {
  const then = await backendWith({ ...token('aa', 'swept') }, { '/tokens/aa': HOUR })
  const now = await backendWith({})
  t.same(undoneByRestore(now, then, NOW), ['tokens used up or deleted since are valid again until they expire (warrenctl tokens rm ID): swept'])
  t.same(undoneByRestore(now, then, NOW + HOUR), [], 'an hour later it has ended either way')
})

t.test('a user is reset by its credentials, and by its generation only when both records have one', async (t) => {
  const user = (name: string, generation?: string) => ({ [`/users/${name}`]: { name, logins: ['root'], roles: [], created: 1, ...(generation ? { generation } : {}) } })
  const credentials = (name: string, password: string) => ({ [`/credentials/${name}`]: { password } })
  const then = await backendWith({
    ...user('older'),
    ...credentials('older', 'p1'),
    ...user('older-reset'),
    ...credentials('older-reset', 'p1'),
    ...user('reset', 'g1'),
    ...credentials('reset', 'p1'),
    ...user('same', 'g1'),
    ...credentials('same', 'p1'),
  })
  const now = await backendWith({
    ...user('older', 'g2'),
    ...credentials('older', 'p1'),
    ...user('older-reset', 'g2'),
    ...user('reset', 'g2'),
    ...credentials('reset', 'p1'),
    ...user('same', 'g1'),
    ...credentials('same', 'p1'),
  })
  t.same(undoneByRestore(now, then, NOW), [
    'users reset or signed up since have their earlier password, TOTP and certificates again (warrenctl users reset NAME): older-reset, reset',
  ])
})

t.test('each item is a record with the command that makes it again, ready for a shell', async (t) => {
  const user = (name: string, logins: string[], roles: string[]) => ({ [`/users/${name}`]: { name, logins, roles, created: 1 } })
  const then = await backendWith({
    ...node('h1', 'pi-1'),
    ...node('h2', 'pi-2'),
    ...labels('h1', { env: 'lab', site: 'berlin' }, NOW - HOUR),
    ...{ '/roles/gone-since': { name: 'gone-since' }, '/roles/edited': { name: 'edited', logins: ['a'] } },
    ...{ '/authorities/host': { keys: 1 }, '/authorities/user': { keys: 1 } },
  })
  const now = await backendWith(
    {
      ...node('h1', 'pi-1'),
      ...node('h2', 'pi-2'),
      ...labels('h1', { env: 'prod', owner: "o'brien" }, NOW),
      ...user('new', ['root', 'pi'], ['access', 'editor']),
      ...lock('l-node', '', { target: { node: 'pi-2', hostId: 'h2' }, expires: NOW + 90_000 }),
      ...lock('l-user', 'bob', { message: 'on leave' }),
      ...lock('l-reset', 'carol', { target: { user: 'carol', issuedBefore: NOW, generation: 'g1' } }),
      ...lock('l-logins', 'dave', { target: { user: 'dave', loginsOnly: true } }),
      ...token('aa', 'named', { nodename: 'pi-9', labels: { env: 'lab' }, expires: NOW + 30 * 60_000 }),
      ...token('cc', 'once', { expires: NOW + 5 * 60_000 }),
      ...token('bb', 'proxy', { roles: ['proxy', 'node'], singleUse: false, expires: NOW + HOUR - 500 }),
      ...{ '/roles/made-since': { name: 'made-since' }, '/roles/edited': { name: 'edited', logins: ['b'] } },
      ...{ '/authorities/host': { keys: 2 }, '/authorities/user': { keys: 1 } },
    },
    { '/locks/l-node': 90_000 },
  )
  t.same(undoneItems(now, then, NOW), [
    { kind: 'user_added', subject: 'new', id: null, command: 'warrenctl users add --logins=root,pi --roles=access,editor new', command_unavailable: null },
    { kind: 'lock_made', subject: 'node pi-2', id: 'l-node', command: 'warrenctl lock --node=h2 --ttl=1m30s', command_unavailable: null },
    { kind: 'lock_made', subject: 'user bob', id: 'l-user', command: "warrenctl lock --user=bob '--message=on leave'", command_unavailable: null },
    { kind: 'lock_made', subject: 'user carol', id: 'l-reset', command: null, command_unavailable: 'the warrenctl users rm or users reset that made it makes it again' },
    { kind: 'lock_made', subject: 'user dave', id: 'l-logins', command: null, command_unavailable: 'failed logins made it' },
    { kind: 'host_labels_changed', subject: 'pi-1', id: 'h1', command: "warrenctl nodes label --remove=site h1 env=prod 'owner=o'\\''brien'", command_unavailable: null },
    { kind: 'token_made', subject: 'named', id: null, command: 'warrenctl tokens add --type=node --ttl=30m --nodename=pi-9 --labels=env=lab', command_unavailable: null },
    { kind: 'token_made', subject: 'once', id: null, command: 'warrenctl tokens add --type=node --ttl=5m --single-use', command_unavailable: null },
    { kind: 'token_made', subject: 'proxy', id: null, command: 'warrenctl tokens add --type=proxy,node --ttl=1h', command_unavailable: null },
    { kind: 'role_changed', subject: 'edited', id: null, command: 'warrenctl create -f ROLE.yaml', command_unavailable: null },
    { kind: 'role_changed', subject: 'gone-since', id: null, command: 'warrenctl rm role/gone-since', command_unavailable: null },
    { kind: 'role_changed', subject: 'made-since', id: null, command: 'warrenctl create -f ROLE.yaml', command_unavailable: null },
    { kind: 'ca_rotated', subject: 'host', id: null, command: null, command_unavailable: 'restore a copy made after the rotation' },
  ])
  t.same(
    undoneLines(undoneItems(now, then, NOW)).at(-1),
    'the CAs are as they were before a rotation made since: devices that followed it do not trust them (restore a copy made after the rotation)',
  )
})

t.test('a lock no command makes again is said with why, in the text too', async (t) => {
  const then = await backendWith({})
  const now = await backendWith({ ...lock('l-reset', 'carol', { target: { user: 'carol', issuedBefore: NOW } }), ...lock('l-user', 'bob') })
  t.same(undoneByRestore(now, then, NOW), [
    'locks made since are gone (warrenctl lock): user bob, user carol (no command for user carol: the warrenctl users rm or users reset that made it makes it again)',
  ])
})

// Hostile values: what a shell would expand or run, what warrenctl would read as a flag, and
// what its comma-separated lists would split or trim. Each command is split by a real shell
// and read by the command's own flag and label parsers, and must mean what the record holds;
// where no command can, there is none, and the record and the text say why.

const PWNED = 'PWNED'
const RUN = `$(touch ${PWNED})`
const TICKS = `\`touch ${PWNED}\``
const COMMANDS: Command[] = [usersAdd, usersRm, usersReset, lockCmd, lockRm, nodesRm, nodesAdd, nodesLabel, tokensRm, tokensAdd, rm, create]

/** The words that `shell` makes of `line`, run with warrenctl a function that prints its arguments, in `cwd`. */
function shellWords(shell: string, line: string, cwd: string): string[] {
  const script = `warrenctl() { printf '%s\\0' "$@"; }\n${line}\n`
  const result = spawnSync(shell, ['-c', script], { cwd, env: { PATH: process.env.PATH, HOME: '/home/warren-test' }, encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`${shell} failed on ${JSON.stringify(line)}: ${result.stderr}`)
  return ['warrenctl', ...result.stdout.split('\0').slice(0, -1)]
}

/** What warrenctl makes of `argv`: the command it names, and what its flags and arguments say. */
function meaning(argv: string[]): Record<string, unknown> {
  if (argv[0] !== 'warrenctl') throw new Error(`not warrenctl: ${JSON.stringify(argv)}`)
  // The longest name first: `lock rm` before `lock`.
  const byLength = [...COMMANDS].sort((a, b) => b.spec.name.length - a.spec.name.length)
  const command = byLength.find((c) => c.spec.name.split(' ').every((word, i) => argv[i] === word))
  if (command === undefined) throw new Error(`no such command: ${JSON.stringify(argv)}`)
  const name = command.spec.name
  const spec = { ...command.spec.flags, ...command.spec.common?.flags }
  const parsed = parseFlags(argv.slice(name.split(' ').length), spec, name)
  const [flags, args] = [parsed.flags as Record<string, unknown>, parsed.args]
  const list = (value: unknown) => (value ?? []) as string[]
  switch (name) {
    case 'warrenctl users add':
      return { command: name, args, logins: list(flags.logins), roles: list(flags.roles) }
    case 'warrenctl lock':
      return { command: name, user: flags.user, node: flags.node, message: flags.message, ttl: flags.ttl }
    case 'warrenctl nodes add':
      return { command: name, nodename: flags.nodename }
    case 'warrenctl nodes label':
      return { command: name, node: args[0], ...parseLabelChanges(args[0], args.slice(1), list(flags.remove)) }
    case 'warrenctl tokens add':
      return { command: name, type: flags.type, ttl: flags.ttl, singleUse: flags['single-use'], nodename: flags.nodename, labels: parseLabels(list(flags.labels).join(',')) }
    case 'warrenctl create':
      return { command: name, file: flags.file }
    default:
      return { command: name, args }
  }
}

t.test('hostile values: each command means what its record holds when a shell splits it, or there is none', async (t) => {
  const user = (name: string, logins: string[] = ['root'], roles: string[] = []) => ({ [`/users/${name}`]: { name, logins, roles, created: 1 } })
  const credentials = (name: string, password: string) => ({ [`/credentials/${name}`]: { password } })
  const removed = ['-rf', "o'brien", RUN, 'home=~', '~root', 'a\nb', '*']
  const hosts = {
    ...node('h1', 'pi-1'),
    ...node('h2', 'pi-2'),
    ...node('h3', 'pi-3'),
    ...node('h4', 'pi-4'),
    ...node('-h5', 'pi-5'),
    ...node('x=y', 'pi-6'),
    ...node('h7', 'pi-7'),
  }
  const then = await backendWith({
    ...hosts,
    ...Object.assign({}, ...removed.map((name) => user(name))),
    ...user(TICKS),
    ...credentials(TICKS, 'p1'),
    ...labels('h1', { '--old': 'x', keep: 'same', '-gone': 'y' }, NOW - HOUR),
    ...lock('-l1', 'alice'),
    ...token('aa', '-t'),
    ...{ '/roles/-r$(touch PWNED)': { name: '-r$(touch PWNED)' } },
  })
  const now = await backendWith({
    ...hosts,
    ...user(TICKS),
    ...credentials(TICKS, 'p2'),
    ...user(`new${RUN}`, ['root', '~pi', 'a:~'], ['access', '-editor']),
    ...user('comma', ['root,admin']),
    ...user('spaced', [' root ']),
    ...user('nologins', []),
    ...labels('h1', { '--auth-server': 'evil.example:3025', '-x': RUN, home: '~', path: 'a:~', '*': TICKS, owner: "o'brien", empty: '', keep: 'same' }, NOW),
    ...labels('h2', { env: 'prod,tier=admin' }, NOW),
    ...labels('h3', { env: ' spaced ' }, NOW),
    ...labels('h4', { note: 'a\nb' }, NOW),
    ...labels('-h5', { env: 'lab' }, NOW),
    ...labels('x=y', { env: 'lab' }, NOW),
    // A key that a plain object would take for its prototype.
    ...labels('h7', { ['__proto__']: 'x', constructor: 'y' }, NOW),
    ...{ '/removed/--all': { hostId: '--all', nodename: 'gone' } },
    ...node('j1', `-n ${RUN}`),
    ...lock('l-user', '--auth-server=evil.example:3025', { message: `${RUN}\n${TICKS} ~ o'brien` }),
    ...lock('l-node', '', { target: { node: 'pi-1', hostId: '-h1' }, message: '-m' }),
    ...token('bb', 'made', { nodename: '-n', labels: { '-k': '~', env: 'a:~', owner: "o'brien" }, expires: NOW + HOUR }),
    ...token('cc', 'comma', { labels: { env: 'x,y' } }),
    ...token('dd', 'spaced', { labels: { env: ' lab' } }),
  })
  const items = undoneItems(now, then, NOW)
  const key = (item: UndoneItem) => `${item.kind} ${item.subject}`
  const ttl = (ms: number) => ms
  // What each command must mean, by kind and subject; a RegExp: no command, for this reason.
  const expected: Record<string, Record<string, unknown> | RegExp> = {
    ...Object.fromEntries(removed.map((name) => [`user_removed ${name}`, { command: 'warrenctl users rm', args: [name] }])),
    [`user_reset ${TICKS}`]: { command: 'warrenctl users reset', args: [TICKS] },
    [`user_added new${RUN}`]: { command: 'warrenctl users add', args: [`new${RUN}`], logins: ['root', '~pi', 'a:~'], roles: ['access', '-editor'] },
    'user_added comma': /"root,admin" holds a comma, which --logins reads as two items/,
    'user_added spaced': /--logins would trim the spaces at the ends of " root "/,
    'user_added nologins': /no logins/,
    'lock_made user --auth-server=evil.example:3025': {
      command: 'warrenctl lock',
      user: '--auth-server=evil.example:3025',
      node: undefined,
      message: `${RUN}\n${TICKS} ~ o'brien`,
      ttl: undefined,
    },
    'lock_made node pi-1': { command: 'warrenctl lock', user: undefined, node: '-h1', message: '-m', ttl: undefined },
    'lock_lifted user alice': { command: 'warrenctl lock rm', args: ['-l1'] },
    'host_removed gone': { command: 'warrenctl nodes rm', args: ['--all'] },
    [`host_joined -n ${RUN}`]: { command: 'warrenctl nodes add', nodename: `-n ${RUN}` },
    'host_labels_changed pi-1': {
      command: 'warrenctl nodes label',
      node: 'h1',
      set: { '--auth-server': 'evil.example:3025', '-x': RUN, home: '~', path: 'a:~', '*': TICKS, owner: "o'brien", empty: '' },
      remove: ['--old', '-gone'],
    },
    'host_labels_changed pi-2': /"prod,tier=admin", holds a comma, which warrenctl reads as a second label/,
    'host_labels_changed pi-3': /" spaced ", has spaces at its ends, which warrenctl trims/,
    'host_labels_changed pi-4': /control character/,
    'host_labels_changed pi-5': { command: 'warrenctl nodes label', node: '-h5', set: { env: 'lab' }, remove: [] },
    'host_labels_changed pi-6': /the host ID "x=y" holds a =/,
    'host_labels_changed pi-7': { command: 'warrenctl nodes label', node: 'h7', set: { ['__proto__']: 'x', constructor: 'y' }, remove: [] },
    'token_used -t': { command: 'warrenctl tokens rm', args: ['-t'] },
    'token_made made': { command: 'warrenctl tokens add', type: ['node'], ttl: ttl(HOUR), singleUse: false, nodename: '-n', labels: { '-k': '~', env: 'a:~', owner: "o'brien" } },
    'token_made comma': /"x,y", holds a comma/,
    'token_made spaced': /" lab", has spaces at its ends/,
    'role_changed -r$(touch PWNED)': { command: 'warrenctl rm', args: ['role/-r$(touch PWNED)'] },
  }
  t.same(items.map(key).sort(), Object.keys(expected).sort(), 'an item for each record changed')
  const cwd = mkdtempSync(join(tmpdir(), 'warren-undone-shell-'))
  // A file a glob would expand to.
  writeFileSync(join(cwd, 'globbed'), '')
  const shells = ['bash', 'sh'].filter((shell) => spawnSync(shell, ['-c', 'true']).status === 0)
  t.ok(shells.includes('bash'), 'bash is here to split the commands')
  for (const item of items) {
    const want = expected[key(item)]
    if (want instanceof RegExp) {
      t.equal(item.command, null, `${key(item)}: no command`)
      t.match(item.command_unavailable, want, `${key(item)}: why`)
      continue
    }
    t.equal(item.command_unavailable, null, `${key(item)}: a command`)
    for (const shell of shells) {
      let got: Record<string, unknown>
      try {
        got = meaning(shellWords(shell, item.command ?? '', cwd))
      } catch (error) {
        t.fail(`${key(item)} (${shell}): ${(error as Error).message}`)
        continue
      }
      t.same(got, want, `${key(item)}, split by ${shell}: ${item.command}`)
    }
  }
  t.same(readdirSync(cwd), ['globbed'], 'no command ran anything')
  t.notOk(existsSync(PWNED))

  const text = undoneLines(items)
  const labelLine = text.find((line) => line.startsWith('hosts whose assigned labels changed since')) ?? ''
  t.match(labelLine, 'no command for pi-2: the value of label "env", "prod,tier=admin", holds a comma', 'the text says why there is none')
  t.match(labelLine, 'no command for pi-4: the label "note" holds a control character')
  t.notOk(
    text.some((line) => line.includes('\n')),
    'each a line of its own, with no newline of a name or a value in it',
  )
  t.match(text.find((line) => line.startsWith('users removed since')) ?? '', 'a\\x0ab', 'a name with a newline, escaped')
})
