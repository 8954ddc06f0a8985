// An OpenSSH ProxyCommand that goes past every proxy: it connects to a direct node's port
// (ssh_service.listen_addr) with a proxy's certificate, as a proxy would, asks for the SSH
// service, and splices standard input and output to it. The node alone then judges the
// user's certificate, which is what tests of the node's own checks need.
//
//   node forged-dial.ts HOST PORT PROXY_CERT_FILE PROXY_KEY_FILE

import { readFileSync } from 'node:fs'
import { connect } from 'node:tls'

const [host, port, certFile, keyFile] = process.argv.slice(2)
const socket = connect({ host, port: Number(port), rejectUnauthorized: false, cert: readFileSync(certFile), key: readFileSync(keyFile) })
socket.once('secureConnect', () => socket.write(JSON.stringify({ service: 'ssh', client: 'forged past the proxy' }) + '\n'))
let reply = Buffer.alloc(0)
const onData = (chunk: Buffer) => {
  reply = Buffer.concat([reply, chunk])
  const end = reply.indexOf(0x0a)
  if (end < 0) return
  socket.off('data', onData)
  const answer = reply.subarray(0, end).toString('utf8')
  if (!answer.includes('"ok":true')) {
    process.stderr.write(`the node refused the stream: ${answer}\n`)
    process.exit(1)
  }
  process.stdout.write(reply.subarray(end + 1))
  process.stdin.pipe(socket)
  socket.pipe(process.stdout)
}
socket.on('data', onData)
socket.on('error', (error) => {
  process.stderr.write(`${error.message}\n`)
  process.exit(1)
})
socket.on('close', () => process.exit(0))
