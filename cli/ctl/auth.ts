// `warrenctl auth sign` (a user's credentials, sign.ts) and `auth rotate` (replacing a CA).

import { describeTtl } from '../../shared/duration.ts'
import { UsageError } from '../../shared/errors.ts'
import { ctlCommand, out } from './ctl-command.ts'
import { checkSignFlags, signUser } from './sign.ts'

export const authSign = ctlCommand({
  name: 'warrenctl auth sign',
  summary: 'fresh keys and short-lived certificates for a user, with known_hosts for every node',
  flags: {
    user: { type: 'string', placeholder: 'NAME', description: 'the user to sign for (required)' },
    ttl: { type: 'duration', default: 60 * 60_000, description: 'how long the certificates live (at most 30h)' },
    out: { type: 'path', placeholder: 'DIR', defaultText: '$WARREN_HOME, else ~/.warren', description: 'the directory to write the credentials to' },
    format: { type: 'enum', values: ['warren', 'openssh'], default: 'warren', description: 'openssh adds an ssh_config for a stock ssh client' },
    proxy: { type: 'string', placeholder: 'HOST:PORT', defaultText: "the live proxies' addresses", description: 'the proxy to reach nodes through' },
    fdpass: { type: 'boolean', description: 'the ssh_config has ssh talk to the proxy itself (ProxyUseFdpass): a plain SSH stream, no process copying it' },
  },
  description: `The keys are made here and never sent. Under the home directory, the ssh_config names the files
    relative to it and runs "warren" from PATH, so the directory works when copied to the same place on another
    machine that has warren. With --fdpass its ProxyCommand hands ssh the connection to the proxy and exits
    (SECURITY.md, "Plain SSH streams", says what that keeps and what it gives up).`,
  examples: [
    'warrenctl auth sign --user=alice --ttl=8h --format=openssh',
    'warrenctl auth sign --user=ci --out=~/ci-creds',
    'warrenctl auth sign --user=bob --format=openssh --fdpass',
  ],
  check: (flags) => checkSignFlags(flags),
  run: (admin, flags) => signUser(admin, flags),
})

const PHASES = ['init', 'update_clients', 'update_servers', 'standby', 'rollback'] as const

export const authRotate = ctlCommand({
  name: 'warrenctl auth rotate',
  summary: 'replace the host or user CA without downtime',
  flags: {
    type: { type: 'enum', values: ['host', 'user'], default: 'host', description: 'which CA' },
    'grace-period': { type: 'duration', default: 30 * 3_600_000, description: 'how long an automatic rotation takes' },
    manual: { type: 'boolean', description: 'step through the phases yourself, one --phase at a time' },
    phase: { type: 'enum', values: PHASES, description: 'the phase to enter (with --manual)' },
  },
  description: `An automatic rotation goes through every phase within the grace period; "warrenctl status" shows
    where it is. A manual one moves when told: init, update_clients, update_servers, standby (or rollback).`,
  examples: ['warrenctl auth rotate --type=host --grace-period=2h', 'warrenctl auth rotate --type=user --manual --phase=init'],
  check(flags) {
    if (flags.manual && !flags.phase) throw new UsageError(`--manual needs --phase=${PHASES.join('|')}`)
    if (!flags.manual && flags.phase) throw new UsageError('--phase goes with --manual')
  },
  async run(admin, flags) {
    const result = await admin.client.call('POST /v1/rotate', { body: { type: flags.type, manual: flags.manual, phase: flags.phase, grace_period_ms: flags['grace-period'] } })
    out(
      flags.manual
        ? `The ${result.type} CA is now in phase ${result.phase}.`
        : `Rotation of the ${result.type} CA started (phase ${result.phase}); it completes in ${describeTtl(flags['grace-period'])}. Follow it with "warrenctl status".`,
    )
  },
})
