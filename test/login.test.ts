// People: an admin invites a user (warrenctl users add), the person signs up and logs in
// with warren login (answers on standard input, TOTP codes from oathtool, an independent
// implementation), and stock OpenSSH reaches nodes through the written ssh_config with
// strict host key checking, a node that joined after the login included. Then what a
// guesser meets: one answer for an unknown user and a wrong password, a lock after five
// failures, the address's tries running out; and invitations spent or revoked.

import { spawn } from 'node:child_process'
import { createPrivateKey } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import ssh2 from 'ssh2'
import t from 'tap'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { shellQuote } from '../shared/shell-quote.ts'
import { openSshPrivateKey } from '../shared/ssh-key-file.ts'
import { AuthProcess, authAndProxy, openssh, ProxyProcess, ROOT, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { codeAt, loginBody, signUp as signUpAs, stepNow } from './helpers/people.ts'

t.setTimeout(300_000)

const PASSWORD = 'a long enough passphrase'
const { auth, pin, proxy } = await authAndProxy(t)
/** A node joined through the proxy: its data dir. */
const joinNode = async (name: string): Promise<string> => {
  const dataDir = tempDir()
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => node.stop())
  await waitForNode(auth, name)
  return dataDir
}
const piBefore = await joinNode('pi-before')
const login = testLogin()
const home = tempDir('warren-home-')
const env = { WARREN_HOME: home }
const clusterDir = join(home, 'test-cluster')

/** `warren login --invite` for this test's person. */
const signUp = (args: string[]) => signUpAs(args, env, PASSWORD)

/** The answer of POST /v1/login through the proxy: its status and message. */
async function loginAnswer(user: string, password: string, code: string): Promise<{ status: number; message: string }> {
  const client = new ApiClient({ server: proxy.web, caPems: [readFileSync(join(clusterDir, 'host_ca.pem'), 'utf8')] })
  try {
    await client.call('POST /v1/login', { body: await loginBody(client, [readFileSync(join(clusterDir, 'host_ca.pem'), 'utf8')], user, password, code) })
    return { status: 200, message: '' }
  } catch (error) {
    if (!(error instanceof ApiError)) throw error
    return { status: error.status, message: error.message }
  } finally {
    await client.close()
  }
}

let secret = ''
let lastStep = 0

t.test('users add prints the invitation, tokens ls lists it as Signup', async (t) => {
  const added = await auth.ctl(['users', 'add', 'alice', `--logins=${login}`])
  t.equal(added.code, 0, added.stderr)
  const lines = added.stdout.split('\n')
  t.equal(lines[0], 'User "alice" has been created but requires a password. Share this with the user; it is valid for 1h:')
  const command = /^warren login --proxy=(\S+) --invite=([0-9a-f]{32})$/m.exec(added.stdout)
  t.ok(command, added.stdout)
  t.equal(command![1], proxy.web, 'the proxy that nodes add names for joins')
  const tokens = await auth.ctl(['tokens', 'ls'])
  t.match(tokens.stdout, /^\S+\s+Signup \(for alice\)\s+/m)

  t.equal((await warren(['login', `--proxy=${proxy.web}`, `--invite=${command![2]}`], { env })).code, 1, 'without a terminal and without --ca-pin, nothing happens')
  t.notOk(existsSync(clusterDir))

  const signed = await signUp([`--proxy=${proxy.web}`, `--invite=${command![2]}`, `--ca-pin=${pin}`])
  t.equal(signed.code, 0, signed.stderr)
  t.match(signed.stdout, new RegExp(`^Logged in as alice to cluster test-cluster \\(roles access, logins ${login}\\) until `))
  secret = signed.secret!
  lastStep = signed.step!
  t.match(readFileSync(join(clusterDir, 'known_hosts'), 'utf8'), /^pi-before,/m)

  const again = await signUp([`--proxy=${proxy.web}`, `--invite=${command![2]}`, `--ca-pin=${pin}`])
  t.equal(again.code, 1)
  t.match(again.stderr, /sign-up refused: token expired or not found/, 'a spent invitation is refused')
  t.notMatch((await auth.ctl(['tokens', 'ls'])).stdout, /Signup/)
})

t.test('a revoked invitation is refused', async (t) => {
  const added = await auth.ctl(['users', 'add', 'bob', `--logins=${login}`, '--ttl=10m'])
  t.match(added.stdout, /it is valid for 10m:/)
  const token = /--invite=(\S+)/.exec(added.stdout)![1]
  const id = /^(\S+)\s+Signup \(for bob\)/m.exec((await auth.ctl(['tokens', 'ls'])).stdout)![1]
  t.equal((await auth.ctl(['tokens', 'rm', id])).code, 0)
  const refused = await signUp([`--proxy=${proxy.web}`, `--invite=${token}`, `--ca-pin=${pin}`])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /token expired or not found/)

  // Sign-up tokens come only with their user.
  t.equal((await auth.ctl(['tokens', 'add', '--type=signup'])).code, 2)
  await t.rejects(auth.api('POST', '/v1/tokens', { roles: 'signup', ttl_ms: 60_000 }), {
    status: 400,
    message: /sign-up tokens come with their user: "warrenctl users add NAME" \(or "users reset NAME"\) makes one/,
  })
})

t.test('logging in again, then stock ssh reaches a node, and one that joined after the login', async (t) => {
  const code = codeAt(secret, lastStep + 1)
  lastStep += 1
  // The cluster is known from the first login: no pin, no terminal needed.
  const again = await warren(['login', `--proxy=${proxy.web}`, '--user=alice'], { env, input: `${PASSWORD}\n${code}\n` })
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /^Logged in as alice to cluster test-cluster/)
  const config = readFileSync(join(clusterDir, 'ssh_config'), 'utf8')
  t.match(config, /StrictHostKeyChecking yes/)

  const before = await openssh(clusterDir, [`${login}@pi-before`, 'echo before'])
  t.equal(before.code, 0, before.stderr)
  t.equal(before.stdout, 'before\n')

  await joinNode('pi-after')
  t.notMatch(readFileSync(join(clusterDir, 'known_hosts'), 'utf8'), /pi-after/, 'the known_hosts file of the login does not know it')
  const after = await openssh(clusterDir, [`${login}@pi-after`, 'echo after'])
  t.equal(after.code, 0, after.stderr)
  t.equal(after.stdout, 'after\n')
  // Its key came from the proxy the ProxyCommand dialed, into the file OpenSSH read for it.
  t.match(readFileSync(join(clusterDir, 'known_hosts.d', 'pi-after'), 'utf8'), /^pi-after,\S+ ssh-ed25519 \S+\n$/)
  t.notMatch(readFileSync(join(clusterDir, 'ssh_config'), 'utf8'), /KnownHostsCommand/, 'no program started for each host key check')

  // The nodes' host keys go only to users of the cluster.
  const anonymous = new ApiClient({ server: proxy.web, caPems: [readFileSync(join(clusterDir, 'host_ca.pem'), 'utf8')] })
  t.teardown(() => anonymous.close())
  await t.rejects(anonymous.call('GET /v1/known-hosts'), { status: 401, message: /^a valid user certificate of this cluster is required/ })

  const status = await warren(['status'], { env })
  t.equal(status.code, 0, status.stderr)
  t.match(status.stdout, /Cluster:\s+test-cluster\n\s+User:\s+alice\n\s+Roles:\s+access\n\s+Logins:\s+\S+/)
  t.match(status.stdout, /Valid:\s+until /)
})

t.test("ssh takes a node's host key only from the cluster's current list, not from the login's known_hosts", async (t) => {
  // What a device stolen with its keys would serve: pi-before's host key, any login
  // accepted, "impostor" as the answer. The login's known_hosts still holds that key.
  const stolenKey = openSshPrivateKey(createPrivateKey(loadIdentity(piBefore)!.sshKeyPem))
  const impostor = new ssh2.Server({ hostKeys: [stolenKey] }, (client) => {
    client.on('error', () => {})
    client.on('authentication', (ctx) => ctx.accept())
    client.on('session', (accept) =>
      accept().on('exec', (accept) => {
        const channel = accept()
        channel.end('impostor\n')
        channel.exit(0)
      }),
    )
  })
  impostor.listen(0, '127.0.0.1')
  await once(impostor, 'listening')
  t.teardown(() => impostor.close())
  t.match(readFileSync(join(clusterDir, 'known_hosts'), 'utf8'), /^pi-before,/m, "the control: the login's known_hosts holds pi-before's key")
  // The connection reaches the impostor instead of the node (as a stolen proxy would route it).
  const port = (impostor.address() as AddressInfo).port
  const reached = await openssh(clusterDir, [
    '-o',
    'ProxyCommand=none',
    '-o',
    'HostName=127.0.0.1',
    '-o',
    'HostKeyAlias=pi-before',
    '-p',
    String(port),
    `${login}@pi-before`,
    'true',
  ])
  t.not(reached.stdout, 'impostor\n', 'ssh does not accept the key')
  t.not(reached.code, 0)
})

/** Runs `argv` at a terminal (util-linux `script` gives it one), typing each answer once the output so far matches its question. */
function atTerminal(argv: string[], env: Record<string, string>, dialogue: [RegExp, (match: RegExpExecArray) => string][]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('script', ['--quiet', '--return', '--command', argv.map(shellQuote).join(' '), '/dev/null'], { env: { ...process.env, ...env } })
    let output = ''
    let from = 0
    child.stdout.on('data', (chunk) => {
      output += chunk
      const [question, answer] = dialogue[0] ?? []
      const match = question?.exec(output.slice(from))
      if (!match || !answer) return
      dialogue.shift()
      from = output.length
      child.stdin.write(`${answer(match)}\r`)
    })
    const timer = setTimeout(() => child.kill(), 30_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code: code ?? 1, output })
    })
  })
}

t.test('at a terminal: the first contact asks to trust the CA, and passwords are not echoed', async (t) => {
  const added = await auth.ctl(['users', 'add', 'carol', `--logins=${login}`])
  const token = /--invite=(\S+)/.exec(added.stdout)![1]
  let enrolled = ''
  const session = await atTerminal(
    [process.execPath, join(ROOT, 'cli/warren.ts'), 'login', `--proxy=${proxy.web}`, `--invite=${token}`],
    { WARREN_HOME: tempDir('warren-home-') },
    [
      [new RegExp(`presents a CA with pin ${pin}\\.[\\s\\S]*Trust it \\(yes/no\\)\\? \\S*$`), () => 'yes'],
      [
        /secret=([A-Z2-7]+)[\s\S]*\(at least 12 characters\): $/,
        (match) => {
          enrolled = match[1]
          return PASSWORD
        },
      ],
      [/The same password again: $/, () => PASSWORD],
      [/Code from the authenticator app: \S*$/, () => codeAt(enrolled, stepNow())],
    ],
  )
  t.equal(session.code, 0, session.output)
  t.match(session.output, /Logged in as carol to cluster test-cluster/)
  t.notOk(session.output.includes(PASSWORD), 'the password is never shown')
})

t.test("an unknown user and a wrong password get the same answer; five failures lock the user's logins, not her work", async (t) => {
  const unknown = await loginAnswer('mallory', PASSWORD, codeAt(secret, stepNow()))
  const wrong = await loginAnswer('alice', 'not the password at all', codeAt(secret, stepNow()))
  t.same(unknown, { status: 401, message: 'login refused: wrong user name, password or second factor code' })
  t.same(wrong, unknown)
  for (let i = 0; i < 4; i++) t.same(await loginAnswer('alice', 'not the password at all', '000000'), unknown)
  const locks = await auth.ctl(['lock', 'ls'])
  t.match(locks.stdout, /user:alice \(logins\).*5 failed logins in a row: locked for 30 minutes/)
  t.same(await loginAnswer('alice', PASSWORD, '000000'), unknown, 'the password alone does not tell the lock: guessing it while locked learns nothing')
  // A code after the last one used (each serves one login), within the step ahead of now.
  while (stepNow() < lastStep) await new Promise((resolve) => setTimeout(resolve, 1000))
  const right = await loginAnswer('alice', PASSWORD, codeAt(secret, lastStep + 1))
  t.same(
    right,
    { status: 403, message: 'login refused: logins of user "alice" are locked: 5 failed logins in a row: locked for 30 minutes' },
    'who knows the password and a code is told why',
  )

  // Anyone may try her password: what they set off must not end her sessions or refuse the
  // certificates she holds. A lock of pi-after made after it is a mark: once the proxy refuses
  // pi-after, it has every lock made before.
  const mark = await auth.ctl(['lock', '--node=pi-after', '--message=a mark'])
  t.equal(mark.code, 0, mark.stderr)
  const refused = /node "pi-after" is (locked|not connected)/
  let marked = await openssh(clusterDir, [`${login}@pi-after`, 'true'])
  const refusedBy = Date.now() + 30_000
  // A session dialled while the proxy closes the locked node's tunnel is cut, not refused: tried again.
  while (!refused.test(marked.stderr) && Date.now() < refusedBy) marked = await openssh(clusterDir, [`${login}@pi-after`, 'true'])
  // Refused as locked, or gone: the proxy closes a locked node's tunnel once it has the lock.
  t.match(marked.stderr, refused, 'the proxy has the locks')
  const still = await openssh(clusterDir, [`${login}@pi-before`, 'echo still working'])
  t.equal(still.code, 0, still.stderr)
  t.match(still.stdout, /still working/, 'her certificates still reach the node')
  t.equal((await auth.ctl(['lock', 'rm', /ID "([^"]+)"/.exec(mark.stdout)![1]])).code, 0)
})

t.test("the client address's tries run out", async (t) => {
  // All at once, so that however slow the machine, the address's budget cannot refill between them.
  const answers = await Promise.all(Array.from({ length: 30 }, () => loginAnswer('mallory', PASSWORD, '000000')))
  const limited = answers.find((answer) => answer.status === 429)
  t.ok(limited, `refused for the address: ${JSON.stringify([...new Set(answers.map((a) => a.status))])}`)
  t.match(limited?.message, /^too many login attempts from 127\.0\.0\.1 \(failed or still under way\); try again in \d+s$/)
})

t.test('users rm ends the user; logout removes the credentials', async (t) => {
  t.equal((await auth.ctl(['users', 'rm', 'alice'])).code, 0)
  t.notMatch((await auth.ctl(['users', 'ls'])).stdout, /alice/)
  t.match((await auth.ctl(['lock', 'ls'])).stdout, /user:alice.*the user was removed/)
  const out = await warren(['logout'], { env })
  t.equal(out.code, 0, out.stderr)
  t.notOk(existsSync(clusterDir))
  t.match((await warren(['status'], { env })).stdout, /^Not logged in/)
})

t.test('a first login without --ca-pin is not offered while the cluster presents two CAs', { timeout: 120_000 }, async (t) => {
  // A cluster of its own: its host CA rotation must not touch the other tests'.
  const rotating = await new AuthProcess().start()
  t.teardown(() => rotating.stop())
  const rotatingPin = await rotating.pin()
  const rotatingProxy = await new ProxyProcess({ auth: rotating, token: await rotating.token(['tokens', 'add', '--type=proxy']), pin: rotatingPin }).start()
  t.teardown(() => rotatingProxy.stop())
  const invite = /--invite=(\S+)/.exec((await rotating.ctl(['users', 'add', 'erin', `--logins=${login}`])).stdout)![1]!
  const argv = [process.execPath, join(ROOT, 'cli/warren.ts'), 'login', `--proxy=${rotatingProxy.web}`, `--invite=${invite}`]
  const trustPrompt = /Trust it \(yes\/no\)\? \S*$/
  let asked = 0
  const answerNo = () => {
    asked++
    return 'no'
  }

  const oneCA = tempDir('warren-home-')
  const before = await atTerminal(argv, { WARREN_HOME: oneCA }, [[trustPrompt, answerNo]])
  t.equal(asked, 1, 'with one CA the pin is shown to be confirmed')
  t.not(before.code, 0, 'and a no ends it')

  t.equal((await rotating.ctl(['auth', 'rotate', '--type=host', '--manual', '--phase=init'])).code, 0)
  const twoCAs = tempDir('warren-home-')
  const during = await atTerminal(argv, { WARREN_HOME: twoCAs }, [[trustPrompt, answerNo]])
  t.equal(asked, 1, 'with two CAs no pin is offered to trust')
  t.not(during.code, 0)
  t.same(readdirSync(twoCAs), [], 'and nothing is written')
})

t.test('a cluster already logged in to that presents another CA is refused, not offered to trust', { timeout: 120_000 }, async (t) => {
  // Another cluster of the same name, as an attacker at the proxy's address would present.
  const impostor = await new AuthProcess().start()
  t.teardown(() => impostor.stop())
  const impostorProxy = await new ProxyProcess({ auth: impostor, token: await impostor.token(['tokens', 'add', '--type=proxy']), pin: await impostor.pin() }).start()
  t.teardown(() => impostorProxy.stop())
  // A home whose earlier login trusted the genuine cluster's CA.
  const anonymous = new ApiClient({ server: proxy.web })
  const genuine = await anonymous.call('GET /v1/ca').finally(() => anonymous.close())
  const home = tempDir('warren-home-')
  const earlier = join(home, 'test-cluster')
  mkdirSync(earlier, { mode: 0o700 })
  const trustedBefore = genuine.host_ca_certs.join('')
  writeFileSync(join(earlier, 'host_ca.pem'), trustedBefore, { mode: 0o600 })
  let asked = 0
  const answerYes = () => {
    asked++
    return 'yes'
  }
  const argv = [process.execPath, join(ROOT, 'cli/warren.ts'), 'login', `--proxy=${impostorProxy.web}`, '--user=alice']
  const refused = await atTerminal(argv, { WARREN_HOME: home }, [[/Trust it \(yes\/no\)\? \S*$/, answerYes]])
  t.equal(asked, 0, 'no question whose yes would replace the CA trusted before')
  t.not(refused.code, 0, 'the login fails')
  t.equal(readFileSync(join(earlier, 'host_ca.pem'), 'utf8'), trustedBefore, 'and the trusted CA is as it was')
})
