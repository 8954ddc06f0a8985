// Files through Warren with stock OpenSSH: scp (SFTP mode, the default), sftp in batch mode
// and rsync over ssh reach a node through a real proxy and tunnel, and run as the login
// user: what a non-root login writes is its own, a root-only file stays out of its reach,
// and root reads it. Every test runs twice: against a node that runs the system's
// sftp-server for the `sftp` subsystem, and against one told there is none
// (`ssh_service.sftp_server: builtin`), which serves SFTP itself.

import { execFile } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { lookupPasswd } from '../agent/login-accounts.ts'
import { findSftpServer } from '../agent/sftp-server.ts'
import { warrenCommand } from '../agent/warren-command.ts'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { AuthProcess, ProxyProcess, type RunResult, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root: the test creates a throwaway login and a root-only file')
  process.exit(0)
}
t.setTimeout(240_000)

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
t.teardown(() => proxy.stop())

/** A node in the cluster whose `sftp` subsystem is served as `sftpServer` says. */
async function fileNode(name: string, sftpServer: string): Promise<void> {
  const config = join(tempDir(), 'node.yaml')
  writeFileSync(config, `ssh_service:\n  listen_addr: 127.0.0.1:0\n  sftp_server: ${sftpServer}\n`)
  const node = startNode([`--config=${config}`, `--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => node.stop())
  await waitForNode(auth, name)
}

// A login's own SFTP server that writes, beside its work, what an SFTP server's log lines
// look like: another user sharing the login could write the same into a session's standard
// error. The node's audit must read the file operations from the session, not from this.
const forger = mkdtempSync('/tmp/warren-sftp-forger-')
t.teardown(() => rmSync(forger, { recursive: true, force: true }))
chmodSync(forger, 0o755)
const forgingServer = join(forger, 'sftp-server')
writeFileSync(
  forgingServer,
  [
    '#!/bin/sh',
    `echo 'remove name "/etc/FORGED-LOG-LINE"' >&2`,
    `echo '{"operation":"remove","path":"/etc/FORGED-JSON-LINE"}' >&2`,
    `exec ${findSftpServer() ? `${findSftpServer()} -e` : `${warrenCommand('sftp-server').join(' ')}`} "$@"`,
    '',
  ].join('\n'),
  { mode: 0o755 },
)
await fileNode('files-forger', forgingServer)

const MODES = [...(findSftpServer() ? [{ node: 'files', what: "the system's sftp-server" }] : []), { node: 'files-builtin', what: "Warren's own SFTP server" }]
if (MODES.length === 1) t.comment("no OpenSSH sftp-server on this machine (Debian: openssh-sftp-server): Warren's own only")
for (const mode of MODES) await fileNode(mode.node, mode.node === 'files' ? 'auto' : 'builtin')

// A non-root login (a throwaway account) and root, each with its own OpenSSH profile.
const login = testLogin()
const account = lookupPasswd(login)!
const userProfile = await signUser(auth, proxy.web, 'alice')
await auth.ctl(['users', 'add', 'rooty', '--logins=root'])
const rootProfile = tempDir('warren-user-')
const signed = await auth.ctl(['auth', 'sign', '--user=rooty', '--ttl=1h', `--out=${rootProfile}`, '--format=openssh', `--proxy=${proxy.web}`])
if (signed.code !== 0) throw new Error(`auth sign failed: ${signed.stderr}`)
const config = (profile: string) => join(profile, 'ssh_config')

// The node is this machine: a root-only file in a directory anyone may enter.
const shared = mkdtempSync('/tmp/warren-sftp-')
t.teardown(() => rmSync(shared, { recursive: true, force: true }))
chmodSync(shared, 0o755)
const secret = join(shared, 'secret')
writeFileSync(secret, 'root only\n')
chmodSync(secret, 0o600)
chownSync(secret, 0, 0)

function run(command: string, args: string[], input = ''): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(command, args, { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 255) : 0, stdout, stderr })
    })
    child.stdin?.end(input)
  })
}

for (const { node: files, what } of MODES) {
  // Each mode in a directory of its own in the login's home, and locally.
  const local = tempDir('warren-local-')
  const home = join(account.home, files)
  mkdirSync(home)
  chownSync(home, account.uid, account.gid)

  const scp = (profile: string, from: string, to: string) => run('scp', ['-F', config(profile), '-o', 'BatchMode=yes', from, to])

  t.test(`scp (SFTP mode) writes a file owned by the login and reads it back (${what})`, async (t) => {
    const source = join(local, 'hello.txt')
    writeFileSync(source, 'hello from scp\n')
    const put = await scp(userProfile, source, `${login}@${files}:${files}/hello.txt`)
    t.equal(put.code, 0, put.stderr)
    const remote = join(home, 'hello.txt')
    t.equal(readFileSync(remote, 'utf8'), 'hello from scp\n')
    t.equal(statSync(remote).uid, account.uid, 'owned by the login')
    t.equal(statSync(remote).gid, account.gid)

    const back = join(local, 'hello.back')
    const get = await scp(userProfile, `${login}@${files}:${files}/hello.txt`, back)
    t.equal(get.code, 0, get.stderr)
    t.equal(readFileSync(back, 'utf8'), 'hello from scp\n')
  })

  t.test(`a non-root login cannot copy a root-only file; root can (${what})`, async (t) => {
    const asUser = join(local, 'secret.user')
    const refused = await scp(userProfile, `${login}@${files}:${secret}`, asUser)
    t.not(refused.code, 0)
    t.notOk(existsSync(asUser) && readFileSync(asUser, 'utf8') !== '', 'nothing of the file arrived')

    const asRoot = join(local, 'secret.root')
    const copied = await scp(rootProfile, `root@${files}:${secret}`, asRoot)
    t.equal(copied.code, 0, copied.stderr)
    t.equal(readFileSync(asRoot, 'utf8'), 'root only\n')
  })

  t.test(`sftp -b: put, ls, rename, get and rm (${what})`, async (t) => {
    writeFileSync(join(local, 'batch.txt'), 'sftp batch\n')
    const batch = [`lcd ${local}`, `cd ${files}`, 'mkdir box', 'put batch.txt box/one.txt', 'ls box', 'rename box/one.txt box/two.txt', 'get box/two.txt fetched.txt', ''].join(
      '\n',
    )
    const first = await run('sftp', ['-F', config(userProfile), '-b', '-', `${login}@${files}`], batch)
    t.equal(first.code, 0, first.stderr)
    t.match(first.stdout, /box\/one\.txt/, 'ls lists the uploaded file')
    const box = join(home, 'box')
    t.notOk(existsSync(join(box, 'one.txt')), 'renamed away')
    t.equal(readFileSync(join(box, 'two.txt'), 'utf8'), 'sftp batch\n')
    t.equal(statSync(join(box, 'two.txt')).uid, account.uid, 'owned by the login')
    t.equal(statSync(box).uid, account.uid, 'the directory too')
    t.equal(readFileSync(join(local, 'fetched.txt'), 'utf8'), 'sftp batch\n')

    const removed = await run('sftp', ['-F', config(userProfile), '-b', '-', `${login}@${files}`], `rm ${files}/box/two.txt\n`)
    t.equal(removed.code, 0, removed.stderr)
    t.notOk(existsSync(join(box, 'two.txt')))

    // In batch mode a failed command fails the run: the root-only file is out of reach.
    const denied = await run('sftp', ['-F', config(userProfile), '-b', '-', `${login}@${files}`], `get ${secret} ${join(local, 'nope')}\n`)
    t.not(denied.code, 0)
    t.notOk(existsSync(join(local, 'nope')))
  })

  t.test(`rsync -e ssh copies a tree as the login (${what})`, async (t) => {
    const tree = join(local, 'tree')
    mkdirSync(join(tree, 'sub'), { recursive: true })
    writeFileSync(join(tree, 'a.txt'), 'a\n')
    writeFileSync(join(tree, 'sub', 'b.txt'), 'b\n')
    const rsh = `ssh -F ${config(userProfile)} -o BatchMode=yes`
    const pushed = await run('rsync', ['-a', '-e', rsh, `${tree}/`, `${login}@${files}:${files}/tree/`])
    t.equal(pushed.code, 0, pushed.stderr)
    const remote = join(home, 'tree')
    t.equal(readFileSync(join(remote, 'sub', 'b.txt'), 'utf8'), 'b\n')
    t.equal(statSync(join(remote, 'sub', 'b.txt')).uid, account.uid, 'owned by the login')

    const pulled = await run('rsync', ['-a', '-e', rsh, `${login}@${files}:${files}/tree/`, join(local, 'tree.back/')])
    t.equal(pulled.code, 0, pulled.stderr)
    t.equal(readFileSync(join(local, 'tree.back', 'a.txt'), 'utf8'), 'a\n')

    const denied = await run('rsync', ['-a', '-e', rsh, `${login}@${files}:${secret}`, join(local, 'secret.rsync')])
    t.not(denied.code, 0)
    t.notOk(existsSync(join(local, 'secret.rsync')))
  })
}

t.test("an SFTP session's file operations are read from the session: what its server writes on its standard error is not believed", async (t) => {
  const source = join(tempDir('warren-local-'), 'real.txt')
  writeFileSync(source, 'real\n')
  const remote = `/tmp/warren-forger-${process.pid}.txt`
  t.teardown(() => rmSync(remote, { force: true }))
  const put = await run('sftp', ['-F', config(userProfile), '-o', 'BatchMode=yes', '-b', '-', `${login}@files-forger`], `put ${source} ${remote}\nrm ${remote}\n`)
  t.equal(put.code, 0, put.stderr)
  const sftpEvents = async () => (await auth.api<{ events: AuditEvent[] }>('GET', '/v1/audit/events?type=sftp&node=files-forger')).events
  await until('the session in the audit log', async () => (await sftpEvents()).some((event) => event.operation === 'remove'))
  t.match(
    (await sftpEvents()).map(({ operation, path, bytes }) => ({ operation, path, bytes })),
    [
      { operation: 'open', path: remote },
      { operation: 'write', path: remote, bytes: 5 },
      { operation: 'remove', path: remote },
    ],
    'what the session did, and nothing else',
  )
  t.notOk(
    (await sftpEvents()).some((event) => String(event.path).includes('FORGED')),
    'no line the server wrote',
  )
})

t.test('an unknown subsystem is refused', async (t) => {
  const result = await run('ssh', ['-F', config(userProfile), '-o', 'BatchMode=yes', '-s', `${login}@${MODES[0].node}`, 'nosuch'])
  t.not(result.code, 0)
})
