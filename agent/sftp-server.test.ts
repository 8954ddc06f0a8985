import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { findSftpServer, sftpServerProgram } from './sftp-server.ts'

t.test('the first executable sftp-server wins; none found gives undefined', async (t) => {
  const dir = t.testdir()
  const plain = join(dir, 'plain')
  const runnable = join(dir, 'runnable')
  writeFileSync(plain, '')
  chmodSync(plain, 0o644)
  writeFileSync(runnable, '#!/bin/sh\n')
  chmodSync(runnable, 0o755)
  t.equal(findSftpServer([join(dir, 'missing'), runnable]), runnable)
  t.equal(findSftpServer([join(dir, 'missing')]), undefined, 'a device without sftp-server')
  // Root may open any file but executes only what has an execute bit.
  t.equal(findSftpServer([plain, runnable]), runnable, 'a file without an execute bit is skipped')
})

t.test("ssh_service.sftp_server: auto finds OpenSSH's, builtin is Warren's own, a path is taken as it is", async (t) => {
  t.equal(sftpServerProgram('auto'), findSftpServer())
  t.equal(sftpServerProgram('builtin'), undefined)
  t.equal(sftpServerProgram('/opt/openssh/sftp-server'), '/opt/openssh/sftp-server')
})
