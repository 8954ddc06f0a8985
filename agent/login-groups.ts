// A session runs with its login's supplementary groups, as sshd's initgroups(3) gives them:
// on a device, `dialout`, `gpio`, `i2c` or `video` are what lets the login use its serial
// ports and pins, and files shared by group are the login's to read. Node starts a process as
// another user only after dropping every supplementary group (libuv's setgroups(0)), and has
// no way to give it others; so for a login that has any, the session's command is started as
// root through a few lines of Perl (perl-base is essential on Debian-based systems) that set
// the groups, then the group and user IDs, check that all three took, and exec the command.
// Without perl the session starts as before, with the login's primary group alone.

import { readFileSync } from 'node:fs'

/**
 * The groups of /etc/group that list `login` as a member, without its primary group `gid`,
 * sorted; none when the file cannot be read. For a login of /etc/passwd: one that NSS gave
 * comes with the groups its sources give (LoginAccount.groups).
 */
export function supplementaryGroups(login: string, gid: number, groupFile = '/etc/group'): number[] {
  let text: string
  try {
    text = readFileSync(groupFile, 'utf8')
  } catch {
    return []
  }
  const groups = new Set<number>()
  for (const line of text.split('\n')) {
    // name:password:gid:member,member
    const fields = line.split(':')
    if (fields.length !== 4 || !/^\d+$/.test(fields[2])) continue
    const id = Number(fields[2])
    if (id !== gid && fields[3].split(',').includes(login)) groups.add(id)
  }
  return [...groups].sort((a, b) => a - b)
}

/** The IDs a session's command takes from the Perl below. */
export interface DropTo {
  uid: number
  gid: number
  /** Supplementary groups, without the primary one. */
  groups: number[]
}

/**
 * Perl that defines `warren_drop($uid, $gid, $groups)` ($groups: comma-separated): the
 * supplementary groups (with the primary one, as initgroups sets them), then the real,
 * effective and saved group and user IDs. It dies unless every ID and group took, so a
 * command never runs with root's IDs or the agent's groups.
 */
export const DROP_PERL = String.raw`
sub warren_drop {
  my ($uid, $gid, $groups) = @_;
  require POSIX;
  my @groups = ($gid, grep { length } split(/,/, $groups));
  $) = join(' ', $gid, @groups);
  POSIX::setgid($gid) or die "warren: setgid $gid: $!\n";
  POSIX::setuid($uid) or die "warren: setuid $uid: $!\n";
  my %want = map { $_ => 1 } @groups;
  my %have = map { $_ => 1 } split(' ', $));
  die "warren: the session's IDs did not take\n" if $< != $uid || $> != $uid || (split(' ', $())[0] != $gid || (split(' ', $)))[0] != $gid
    || join(',', sort keys %want) ne join(',', sort keys %have);
}
`

/** Runs `file` with `argv` (argv[0] first) once warren_drop has made it the login's. */
const DROP_AND_EXEC = String.raw`${DROP_PERL}
delete $ENV{PERL_BADLANG};
my ($uid, $gid, $groups, $file, @argv) = @ARGV;
warren_drop($uid, $gid, $groups);
exec { $file } @argv or die "warren: $file: $!\n";
`

/** perl's argv to start `file` (`argv` with argv[0] first) as `to`, from a process that runs as root. */
export function dropAndExec(to: DropTo, file: string, argv: string[]): string[] {
  return ['-e', DROP_AND_EXEC, '--', String(to.uid), String(to.gid), to.groups.join(','), file, ...argv]
}
