// Static tokens from the auth server's config, one inline and one read from a file.

import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { AuthProcess, startNode, tempDir, waitForNode, warren } from './helpers/cluster.ts'

const INLINE = 'static-inline-token-0123456789'
const FROM_FILE = 'static-file-token-9876543210ab'
const dir = tempDir()
const tokenFile = join(dir, 'node-token')
writeFileSync(tokenFile, `  ${FROM_FILE}\n`, { mode: 0o600 })

const auth = new AuthProcess({ authServiceYaml: `  tokens: ["node:${INLINE}", "proxy,node:${tokenFile}"]` })
t.before(() => auth.start())
t.teardown(() => auth.stop())

t.test('static tokens show "never" and are masked unless asked', async (t) => {
  const listing = await auth.ctl(['tokens', 'ls'])
  t.equal(listing.code, 0)
  t.match(listing.stdout, /^[0-9a-f]{12} \(static\)\s+node\s+never$/m)
  t.match(listing.stdout, /^[0-9a-f]{12} \(static\)\s+proxy,node\s+never$/m)
  t.notMatch(listing.stdout, new RegExp(`${INLINE}|${FROM_FILE}`))
  const secrets = await auth.ctl(['tokens', 'ls', '--with-secrets'])
  t.match(secrets.stdout, new RegExp(`^${INLINE}\\s+node\\s+never$`, 'm'))
  t.match(secrets.stdout, new RegExp(`^${FROM_FILE}\\s+proxy,node\\s+never$`, 'm'))
})

t.test('nodes join with an inline static token and with one from a file', async (t) => {
  const pin = await auth.pin()
  const a = startNode([`--data-dir=${tempDir()}`, `--auth-server=${auth.address}`, `--token=${INLINE}`, `--ca-pin=${pin}`, '--nodename=static-a'])
  t.teardown(() => a.stop())
  // The node side reads a token file too: the value starts with "/".
  const nodeTokenFile = join(tempDir(), 'token')
  writeFileSync(nodeTokenFile, FROM_FILE + '\n')
  const b = startNode([`--data-dir=${tempDir()}`, `--auth-server=${auth.address}`, `--token=${nodeTokenFile}`, `--ca-pin=${pin}`, '--nodename=static-b'])
  t.teardown(() => b.stop())
  await waitForNode(auth, 'static-a')
  const listing = await waitForNode(auth, 'static-b')
  t.match(listing, /^static-a\s/m)
  t.match(listing, /^static-b\s/m)
})

t.test('static tokens cannot be deleted with warrenctl', async (t) => {
  const result = await auth.ctl(['tokens', 'rm', INLINE])
  t.equal(result.code, 1)
  t.match(result.stderr, /static token/)
  t.match((await auth.ctl(['tokens', 'ls'])).stdout, /never/)
})

t.test('a static token whose file is missing stops the auth server with a clear error', async (t) => {
  const broken = new AuthProcess({ authServiceYaml: '  tokens: ["node:/nonexistent/warren-token"]' })
  const result = broken.start().then(
    () => 'started',
    (error: Error) => error.message,
  )
  t.match(await result, /\/nonexistent\/warren-token/)
  await broken.stop()
})

t.test('static tokens shorter than 16 characters stop the auth server with the key and line; nothing is created', async (t) => {
  const dir = tempDir()
  const dataDir = join(dir, 'data')
  const config = (tokens: string[]) => {
    const path = join(dir, `warren-${tokens.length}.yaml`)
    writeFileSync(
      path,
      ['version: v1', `data_dir: ${dataDir}`, 'auth_service:', '  listen_addr: 127.0.0.1:0', '  tokens:', ...tokens.map((token) => `    - "${token}"`), ''].join('\n'),
    )
    return path
  }
  const inline = config(['node:static-inline-token-0123456789', 'proxy:s3cr3t-short'])
  const refused = await warren(['start', '--roles=auth', `--config=${inline}`])
  t.equal(refused.code, 1)
  t.match(refused.stderr, `${inline}: line 7: "auth_service.tokens[1]" holds a token shorter than 16 characters`)
  t.notMatch(refused.stderr, 's3cr3t', 'the token is not printed')
  t.notOk(existsSync(dataDir), 'no data dir was created')

  const shortFile = join(dir, 'short-token')
  writeFileSync(shortFile, 's3cr3t-short\n', { mode: 0o600 })
  const fromFile = await warren(['start', '--roles=auth', `--config=${config([`node:${shortFile}`])}`])
  t.equal(fromFile.code, 1)
  t.match(fromFile.stderr, `auth_service.tokens[0]: the token in ${shortFile} is shorter than 16 characters`)
  t.notMatch(fromFile.stderr, 's3cr3t')
  t.notOk(existsSync(dataDir), 'no data dir was created')
})
