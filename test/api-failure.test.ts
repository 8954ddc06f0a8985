// A failure is not the caller's fault: with its etcd stopped under it, an auth server asked
// for a token answers 500 with a request ID and nothing of the failure, and logs the detail
// at error level under the same ID. (It once answered such an outage with 400 "Bad Request".)

import t from 'tap'
import { AuthProcess, JSON_LOGS, logEntries } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'

const unavailable = etcdUnavailable()
if (unavailable) {
  t.plan(0, unavailable)
} else {
  let etcd: EtcdServer
  let auth: AuthProcess

  t.before(async () => {
    etcd = await EtcdServer.start()
    auth = new AuthProcess({ authServiceYaml: `  storage: { type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${uniquePrefix('failure')}" }\n${JSON_LOGS}` })
    await auth.start()
  })
  t.teardown(async () => {
    await auth?.stop()
    await etcd?.stop()
  })

  t.test('tokens add while etcd is down: a 500 with a request ID, the detail in the log', async (t) => {
    t.equal((await auth.ctl(['tokens', 'add', '--type=node'])).code, 0, 'with etcd up, a token is made')
    await etcd.stop()

    const failed = await auth.ctl(['tokens', 'add', '--type=node'])
    t.equal(failed.code, 1, 'warrenctl fails')
    const requestId = /request ID ([0-9a-f]{16})/.exec(failed.stderr)?.[1]
    t.ok(requestId, `warrenctl shows a request ID: ${failed.stderr.trim()}`)
    t.notMatch(failed.stderr, /etcd|UNAVAILABLE|ECONNREFUSED|127\.0\.0\.1:\d+|Bad Request/i, 'and nothing of the failure')

    const entries = logEntries(auth.daemon.stderr, { level: 'error', request_id: requestId })
    t.equal(entries.length, 1, 'one error entry carries that ID')
    t.match(entries[0], { method: 'POST', path: '/v1/tokens', error: /\S/ }, `the entry has the detail: ${String(entries[0]?.error)}`)
  })
}
