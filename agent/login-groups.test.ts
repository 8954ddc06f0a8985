// A login's supplementary groups as /etc/group lists them, and the Perl that gives them to a
// session's command (run for real when this runs as root with perl).

import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../test/helpers/cluster.ts'
import { dropAndExec, supplementaryGroups } from './login-groups.ts'
import { findPerl } from './pty.ts'

t.test('the groups that list the login as a member, without its primary one', async (t) => {
  const file = join(tempDir(), 'group')
  writeFileSync(
    file,
    [
      'root:x:0:',
      'dialout:x:20:pi,other',
      'pi:x:1000:pi', // its primary group, which lists it too
      'gpio:x:997:other,pi',
      'video:x:44:pip', // another name that starts like it
      'broken:x:abc:pi', // no number: skipped
      'short:x:12', // no member field: skipped
      '',
    ].join('\n'),
  )
  t.same(supplementaryGroups('pi', 1000, file), [20, 997])
  t.same(supplementaryGroups('nobody-here', 1000, file), [])
  t.same(supplementaryGroups('pi', 1000, join(tempDir(), 'missing')), [], 'no file: none')
})

const perl = findPerl()
t.test('the command runs with the IDs and groups given, none of its starter’s', { skip: process.getuid?.() !== 0 ? 'needs root' : !perl && 'needs perl' }, async (t) => {
  const ran = spawnSync(perl!, dropAndExec({ uid: 65534, gid: 65534, groups: [20, 44] }, '/bin/sh', ['sh', '-c', 'id -u; id -g; id -G']), {
    encoding: 'utf8',
    env: { PATH: '/usr/bin:/bin' },
  })
  t.equal(ran.status, 0, ran.stderr)
  const [uid, gid, groups] = ran.stdout.trim().split('\n')
  t.same([uid, gid], ['65534', '65534'])
  t.same(groups.split(' ').map(Number).sort(), [20, 44, 65534], "the primary group and the given ones, not root's")
})
