// A process on a pseudo-terminal whose master end the agent holds itself, so a keystroke
// crosses no process between the SSH channel and the shell (the interactive round trip of
// `bench:copy`). Node opens /dev/ptmx and reads and writes the master, but cannot make the
// ioctls that unlock the slave and make it a controlling terminal: a few lines of Perl,
// which every Debian-based system carries (perl-base is essential there), make them and
// then become the session's command. Without perl the session falls back to util-linux
// `script` (agent/ssh-session.ts).

import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs'
import { Socket, type SocketConstructorOpts } from 'node:net'
import { join } from 'node:path'
import { DROP_PERL, type DropTo } from './login-groups.ts'

/** Where perl is looked for: the PATH a session gets. */
const PERL_DIRS = ['/usr/local/bin', '/usr/bin', '/bin']

/**
 * Run by perl with the master as fd 3: unlock and size the slave, let go of the master
 * (the shell must not hold it, or closing ours would not hang it up); when it starts as root,
 * give the session the login's audit login UID (as pam_loginuid does for sshd's: auditd then
 * names the login for what the session does, and `last` sees the session's process as the
 * login's; a kernel without audit, or a UID set already and locked, leaves it as it is) and
 * take the login's IDs, before the slave is opened: it is the login's, and root without
 * CAP_DAC_OVERRIDE (the node's unit) may not open it. Then take the slave as controlling
 * terminal (the child is a session leader already, so opening it would do; TIOCSCTTY says so
 * outright) and as standard streams, and exec the command. The ioctl
 * numbers are Linux's on x86-64 and arm64: TIOCSPTLCK, TIOCSWINSZ, TIOCSCTTY.
 * PERL_BADLANG keeps perl quiet about a locale the client asked for and the device lacks;
 * the shell still gets LANG and reports it its own way.
 */
const HELPER = String.raw`${DROP_PERL}
delete $ENV{PERL_BADLANG};
my ($drop, $slave, $rows, $cols, $file, @argv) = @ARGV;
open(my $master, '+<&=', 3) or die "warren: pty master: $!\n";
my $unlock = pack('i', 0);
ioctl($master, 0x40045431, $unlock) or die "warren: unlocking $slave: $!\n";
if ($rows > 0 && $cols > 0) {
  my $size = pack('S4', $rows, $cols, 0, 0);
  ioctl($master, 0x5414, $size) or die "warren: sizing $slave: $!\n";
}
close($master);
if ($drop ne '-') {
  my ($uid) = split(/:/, $drop);
  if (open(my $loginuid, '>', '/proc/self/loginuid')) { print $loginuid $uid; close($loginuid); }
  warren_drop(split(/:/, $drop, 3));
}
open(my $tty, '+<', $slave) or die "warren: $slave: $!\n";
ioctl($tty, 0x540E, 0) or die "warren: $slave as controlling terminal: $!\n";
open(STDIN, '<&', $tty) && open(STDOUT, '>&', $tty) && open(STDERR, '>&', $tty) or die "warren: $slave: $!\n";
close($tty);
exec { $file } @argv or die "warren: $file: $!\n";
`

/** The system's perl, or undefined when it has none. */
export function findPerl(dirs: readonly string[] = PERL_DIRS): string | undefined {
  return dirs.map((dir) => join(dir, 'perl')).find((path) => existsSync(path))
}

let kernelNamesPtys: boolean | undefined

/**
 * The perl that opens session ptys here, or undefined to leave them to `script`: also when
 * the kernel does not say which pty /dev/ptmx opened (tty-index in fdinfo, which older
 * kernels lack).
 */
export function ptyPerl(): string | undefined {
  const perl = findPerl()
  if (perl === undefined) return undefined
  if (kernelNamesPtys === undefined) {
    let fd: number
    try {
      fd = openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY)
    } catch {
      // No pty to be had now (none left, or no /dev/ptmx): ask again at the next session.
      return undefined
    }
    try {
      slavePath(fd)
      kernelNamesPtys = true
    } catch {
      kernelNamesPtys = false
    } finally {
      closeSync(fd)
    }
  }
  return kernelNamesPtys ? perl : undefined
}

export interface PtySpawnOptions {
  perl: string
  /** argv[0] the command sees (a leading dash makes a login shell). */
  argv0?: string
  cwd: string
  env: Record<string, string>
  /** The login's: the pty is made as the login's, before the command opens it. */
  uid?: number
  gid?: number
  /** For a login with supplementary groups: perl starts as root and takes these IDs and groups itself (agent/login-groups.ts). */
  drop?: DropTo
  rows: number
  cols: number
}

export interface PtyProcess {
  child: ChildProcess
  /**
   * The master end: what the command reads from its terminal is written here. What it
   * writes comes through `onOutput`, not as the socket's data events; the socket still
   * ends, fails with EIO once nothing holds the slave, and closes.
   */
  master: Socket
  /**
   * Where the command's output goes: `sink` gets each read's bytes as a buffer of its own.
   * When it returns false, reading stops until `master.resume()`.
   */
  onOutput(sink: (chunk: Buffer) => boolean): void
  /** The slave, e.g. /dev/pts/3. */
  path: string
}

/**
 * The master's one read buffer. A read of the master returns at most what the line
 * discipline holds (4 KiB on Linux); a socket's default read allocates 64 KiB and then
 * shrinks it, once per keystroke's echo (the interactive round trip of `bench:copy`).
 */
const MASTER_READ_BYTES = 16 * 1024

/** Starts `file` on a new pty, in a session of its own, with the agent holding the master. */
export function spawnOnPty(file: string, args: string[], options: PtySpawnOptions): PtyProcess {
  const masterFd = openMaster(options.uid, options.gid)
  let child: ChildProcess
  let path: string
  try {
    path = slavePath(masterFd)
    // With groups to set, perl takes the login's IDs itself once the terminal is its own.
    const { drop } = options
    child = spawn(
      options.perl,
      ['-e', HELPER, '--', drop ? `${drop.uid}:${drop.gid}:${drop.groups.join(',')}` : '-', path, String(options.rows), String(options.cols), file, options.argv0 ?? file, ...args],
      {
        cwd: options.cwd,
        // SSH_TTY: the terminal's name, as sshd sets it for a session with one.
        env: { ...options.env, SSH_TTY: path, PERL_BADLANG: '0' },
        uid: drop ? undefined : options.uid,
        gid: drop ? undefined : options.gid,
        // setsid(): the slave becomes this session's controlling terminal.
        detached: true,
        stdio: ['ignore', 'ignore', 'pipe', masterFd],
      },
    )
  } catch (err) {
    closeSync(masterFd)
    throw err
  }
  return { child, path, ...masterSocket(masterFd) }
}

/**
 * Opens /dev/ptmx (O_CLOEXEC comes from Node: only the helper inherits the master). devpts
 * gives the new slave the opener's effective IDs, so it is opened as the login, and the pty
 * is the login's from the start, as sshd hands one over; handing it over afterwards would
 * take CAP_CHOWN, which the node's unit leaves out on purpose. The switch lasts one open
 * call, but glibc makes it for every thread of the process: a file operation of Node's
 * thread pool that runs in that instant runs as the login, and fails with EACCES in the
 * root-only data dir: nothing there can be made or read as the login. Node offers no
 * per-thread setfsuid, and a helper that opened the master could not pass it back.
 */
function openMaster(uid: number | undefined, gid: number | undefined): number {
  const flags = constants.O_RDWR | constants.O_NOCTTY
  const { seteuid, setegid } = process
  const euid = process.geteuid?.()
  const egid = process.getegid?.()
  if (uid === undefined || uid === euid || euid === undefined || egid === undefined || !seteuid || !setegid) return openSync('/dev/ptmx', flags)
  setegid(gid ?? egid)
  try {
    seteuid(uid)
    try {
      return openSync('/dev/ptmx', flags)
    } finally {
      seteuid(euid)
    }
  } finally {
    setegid(egid)
  }
}

/** The slave of our master `masterFd`. */
function slavePath(masterFd: number): string {
  const path = slaveOfMaster('self', masterFd)
  if (!path) throw new Error('the kernel does not report which pty /dev/ptmx opened (tty-index in /proc/self/fdinfo)')
  return path
}

/** The slave of a pty master that process `pid` holds as `fd`, as the kernel reports it in /proc; undefined if it does not. */
export function slaveOfMaster(pid: number | 'self', fd: number | string): string | undefined {
  const index = /^tty-index:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))
  return index ? `/dev/pts/${index[1]}` : undefined
}

/**
 * A stream on the master. A tty handle (what net.Socket would choose for it) writes with
 * blocking calls, which would stall the agent whenever a shell stops reading; a pipe handle
 * on the same descriptor is non-blocking and polled like any socket. Reading the master
 * fails with EIO once no process holds the slave: that is its end, which the caller handles.
 */
function masterSocket(fd: number): Pick<PtyProcess, 'master' | 'onOutput'> {
  const { Pipe, constants: pipeConstants } = (process as unknown as { binding(name: 'pipe_wrap'): PipeWrap }).binding('pipe_wrap')
  const handle = new Pipe(pipeConstants.SOCKET)
  const err = handle.open(fd)
  if (err) {
    closeSync(fd)
    throw new Error(`cannot open the pty master (errno ${-err})`)
  }
  // Output read before a sink is given waits for it (reads only come from the event loop,
  // so the caller that gives one in the same tick never leaves any here).
  let sink: ((chunk: Buffer) => boolean) | undefined
  const early: Buffer[] = []
  const master = new Socket({
    handle: handle as unknown as SocketConstructorOpts['handle'],
    readable: true,
    writable: true,
    // The callback's buffer is read into again next time: each chunk is copied out.
    onread: {
      buffer: Buffer.allocUnsafe(MASTER_READ_BYTES),
      callback: (bytes: number, buffer: Uint8Array) => {
        const chunk = Buffer.copyBytesFrom(buffer, 0, bytes)
        if (sink) return sink(chunk)
        early.push(chunk)
        return true
      },
    },
  })
  const onOutput = (given: (chunk: Buffer) => boolean) => {
    sink = given
    for (const chunk of early.splice(0)) given(chunk)
  }
  return { master, onOutput }
}

interface PipeWrap {
  Pipe: new (type: number) => { open(fd: number): number }
  constants: { SOCKET: number }
}
