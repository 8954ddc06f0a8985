// `warrenctl status`: the cluster's name, version, CAs and the pin nodes join with.

import { formatUtc } from '../../shared/duration.ts'
import { printable } from '../../shared/printable.ts'
import type { CAStatus } from '../../shared/protocol/admin.ts'
import { caExpiryText } from '../status-text.ts'
import { ctlCommand, out } from './ctl-command.ts'

export const status = ctlCommand({
  name: 'warrenctl status',
  summary: "the cluster's name, version, CAs and CA pins",
  flags: {},
  description:
    'A rotation in progress shows its phase; each CA when its certificate expires (rotate before then); the CA pin is what "warren start --ca-pin" and "warren install --ca-pin" take.',
  examples: ['warrenctl status', 'warrenctl status --data-dir=/var/lib/warren'],
  async run(admin) {
    const status = await admin.client.call('GET /v1/status')
    const now = Date.now()
    const rotated = (ca: CAStatus, type: 'host' | 'user') => {
      // An auth server of an earlier version does not say when (nor whether it has expired: caExpiryText).
      const expires = ca.expires === undefined ? '' : `, ${caExpiryText(ca.expires, ca.expired, now, type)}`
      if (ca.rotation) return `rotation in progress: phase ${ca.rotation.phase} (${ca.rotation.mode}), since ${formatUtc(ca.rotation.phase_started)}${expires}`
      return `${ca.last_rotated ? `rotated ${formatUtc(ca.last_rotated)}` : 'never updated'}${expires}`
    }
    const rows = [
      ['Cluster', status.cluster_name],
      ['Version', status.version],
      ['Host CA', rotated(status.host_ca, 'host')],
      ['User CA', rotated(status.user_ca, 'user')],
      ...status.host_ca.pins.map((pin) => ['CA pin', pin]),
    ]
    const width = Math.max(...rows.map(([name]) => name.length))
    for (const [name, value] of rows) out(`${name.padEnd(width)}  ${printable(value)}`)
  },
})
