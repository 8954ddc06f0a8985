// The systemd units, as text: `warren install` writes them from here because the single
// executable bundles code and carries no data files. warren.service and warren-proxy.service
// beside this file are copies for packagers; a test keeps them identical to these constants.
// Running this file rewrites them: node packaging/systemd/units.ts

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { MALLOC_ARENAS } from '../../shared/malloc-arenas.ts'

/** Where both units expect the executable; `warren install --binary` writes another path. */
export const DEFAULT_BINARY = '/usr/local/bin/warren'

/** The node agent: root (its SSH server runs sessions as any login), confined. */
export const NODE_UNIT = `# Warren node agent: keeps reverse tunnels to the cluster's proxies (or, joined to an
# auth server directly, lets them dial it on ssh_service.listen_addr) and serves this
# device's SSH sessions and declared local ports to those proxies alone.
# \`warren install\` writes this file, /etc/warren.yaml and /var/lib/warren, then:
#   systemctl daemon-reload && systemctl enable --now warren
#
# Why root: the SSH server starts each session as the login named by the user's
# certificate, which may be any account on the device, so it must switch user and group
# IDs. Root is confined instead, and sessions, being the agent's children, share the
# confinement:
#   - the system is read-only, /sys and /proc/sys included; writable are /var/lib/warren,
#     the homes under /home and /root, and a /tmp private to the agent and its sessions;
#   - no process in it, root logins and sudo included, holds capabilities beyond the
#     CapabilityBoundingSet below.
# To administer the device itself through Warren (install packages, edit /etc), lift both
# on that device with \`systemctl edit warren\`:
#   [Service]
#   ProtectSystem=no
#   CapabilityBoundingSet=~

[Unit]
Description=Warren node agent (reverse tunnel and SSH server)
# time-sync.target: after the clock is synchronised only where something waits for that
# (systemd-time-wait-sync.service, when enabled); otherwise it waits for nothing. Either way
# the agent follows the clock being set later (checked every 5 s), without a restart.
After=network-online.target time-sync.target
Wants=network-online.target

[Service]
Type=exec
ExecStart=${DEFAULT_BINARY} start --config=/etc/warren.yaml
# Two malloc arenas: V8's worker threads share one instead of keeping one each, 1.6 MB of
# an idle agent's memory (sessions start with an environment of their own).
Environment=${MALLOC_ARENAS.variable}=${MALLOC_ARENAS.value}
ExecReload=/bin/kill -HUP $MAINPID
KillSignal=SIGTERM
# Sessions get SIGHUP, then SIGKILL two seconds later; the rest is closing tunnels.
TimeoutStopSec=20
Restart=on-failure
RestartSec=5
# Exit status 2 is a bad command line or config value, 3 a join the cluster refused (a
# token expired or used up): restarting cannot fix either, and each try would count
# against the join rate limit of this device's address.
RestartPreventExitStatus=2 3
# Should SIGHUP end the process instead of reloading it, start it again: a reload must
# never leave the device unreachable.
RestartForceExitStatus=SIGHUP

# Capabilities, each for a reason:
#   CAP_SETUID CAP_SETGID   start a session as its login (setuid, setgid, setgroups)
#   CAP_DAC_READ_SEARCH     enter the login's home as the session's working directory
#                           before switching to it (homes are often mode 0700)
#   CAP_KILL                end a session's process group, which runs as its login
#   CAP_AUDIT_WRITE         let sudo and su in sessions write their audit records
#   CAP_AUDIT_CONTROL       give a session with a terminal its login's audit login UID, as
#                           pam_loginuid does for sshd's (auditd, last)
# Not CAP_DAC_OVERRIDE or CAP_CHOWN: the agent writes only its own files and root's login
# records, as their owner.
CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_DAC_READ_SEARCH CAP_KILL CAP_AUDIT_WRITE CAP_AUDIT_CONTROL
# Not NoNewPrivileges: it would stop setuid programs in sessions (sudo, su, passwd). The
# agent itself needs no new privileges: it starts as root and only gives them up. The
# Protect*/Restrict* settings below do not imply it here: systemd implies it only for
# services that start without root's privileges.
NoNewPrivileges=no

# The data dir (identity keys and certificates), created 0700.
StateDirectory=warren
StateDirectoryMode=0700
ProtectSystem=strict
# Not ProtectHome: sessions work in their login's home. strict makes homes read-only
# too, so the usual ones are made writable again ("-": fine if missing), and the login
# records sessions with a terminal go in (who, last, lastlog). Each record file is bound
# as it is when the agent starts: once logrotate moves wtmp aside (Debian's rule: monthly,
# from 1 MB), the agent's records go to the moved file until it restarts.
ProtectHome=no
ReadWritePaths=/var/lib/warren -/home -/root -/run/utmp -/var/log/wtmp -/var/log/lastlog
PrivateTmp=yes
# Not PrivateDevices, nor ProtectClock (which also closes every device but the clock):
# sessions on a device often need its serial ports, GPIO or USB. Setting the clock takes
# CAP_SYS_TIME, which the bounding set leaves out anyway.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
# Sessions cannot create namespaces (unshare, rootless containers): an exposed kernel surface.
RestrictNamespaces=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
# No SystemCallFilter: what it would block needs capabilities left out above, and sessions
# may trace their own programs. No UMask: sessions create files as a login shell would.
# No MemoryDenyWriteExecute: V8 compiles JavaScript to machine code at run time.

[Install]
WantedBy=multi-user.target
`

/** The proxy and auth server: an unprivileged system user, tightly confined. */
export const PROXY_UNIT = `# Warren proxy and auth server: the cluster's public face (web API, reverse tunnels)
# and its trust core (CAs, tokens, joins). Examples: packaging/examples/proxy.yaml and
# packaging/examples/auth.yaml. A host running both needs only their auth_service and
# proxy_service sections in /etc/warren.yaml: the proxy then joins its local auth server.
#
# It runs as the system user "warren", which must exist and be able to read the config:
#   useradd --system --home-dir /var/lib/warren --shell /usr/sbin/nologin warren
#   chown root:warren /etc/warren.yaml && chmod 0640 /etc/warren.yaml
# (and the same for token files the config names). Then:
#   systemctl daemon-reload && systemctl enable --now warren-proxy

[Unit]
Description=Warren proxy and auth server
# time-sync.target: after the clock is synchronised only where something waits for that
# (systemd-time-wait-sync.service, when enabled); otherwise it waits for nothing. Either way
# both follow the clock being set later (checked every 5 s), without a restart.
After=network-online.target time-sync.target
Wants=network-online.target
# Both units use /etc/warren.yaml and /var/lib/warren, owned by different users.
Conflicts=warren.service

[Service]
Type=exec
User=warren
Group=warren
# The roles it runs are the sections /etc/warren.yaml writes (auth_service, proxy_service),
# as packaging/examples/auth.yaml and proxy.yaml do. With --configured-roles a file without
# an ssh_service section starts no node role; without it, warren start would start one, as
# Teleport does, unless ssh_service.enabled is false: a node that the proxy's token cannot
# join, and whose failure would stop the proxy with it.
ExecStart=${DEFAULT_BINARY} start --config=/etc/warren.yaml --configured-roles
ExecReload=/bin/kill -HUP $MAINPID
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=on-failure
RestartSec=5
# Exit status 2 is a bad command line or config value, 3 a join the cluster refused (the
# proxy's token): restarting cannot fix either.
RestartPreventExitStatus=2 3
# Should SIGHUP end the process instead of reloading it, start it again.
RestartForceExitStatus=SIGHUP

# Its only privilege: binding ports below 1024, such as 443 for the web port.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes

# The data dir (CA keys, backend.db, certificates), created 0700 and owned by warren.
StateDirectory=warren
StateDirectoryMode=0700
# /var/log/warren, for auth_service.audit.file (the examples' /var/log/warren/audit.jsonl),
# owned by warren and writable although the rest of the system is not.
LogsDirectory=warren
LogsDirectoryMode=0750
ProtectSystem=strict
ReadWritePaths=/var/lib/warren
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
# Netlink: getaddrinfo asks the kernel which address families are configured.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
UMask=0077
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# No MemoryDenyWriteExecute: V8 compiles JavaScript to machine code at run time.

[Install]
WantedBy=multi-user.target
`

/** The files beside this module, by name. */
export const UNIT_FILES: Record<string, string> = {
  'warren.service': NODE_UNIT,
  'warren-proxy.service': PROXY_UNIT,
}

/** `unit` with its ExecStart running `binary` instead of the default path. */
export function withBinary(unit: string, binary: string): string {
  return unit.replace(/^ExecStart=\S+/m, `ExecStart=${binary}`)
}

if (import.meta.main) {
  for (const [name, text] of Object.entries(UNIT_FILES)) writeFileSync(join(import.meta.dirname, name), text)
}
