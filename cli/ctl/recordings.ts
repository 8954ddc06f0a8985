// `warrenctl recordings ls|get`: the interactive sessions recorded on the nodes, and one of
// them as the asciicast v2 file the node wrote, for `asciinema play` or an archive.

import { formatDuration, formatUtc } from '../../shared/duration.ts'
import type { RecordingJson } from '../../shared/protocol/recordings.ts'
import { FORMAT_FLAG, formatList } from '../output.ts'
import { ctlCommand } from './ctl-command.ts'

export const recordingsLs = ctlCommand({
  name: 'warrenctl recordings ls',
  summary: 'the recorded interactive sessions, oldest first',
  flags: { format: FORMAT_FLAG },
  description: `A session still being uploaded shows "(partial)" after its size. With auth servers on etcd,
    a note on standard error says when other live auth servers keep their recordings in another folder
    than this one's recording_dir: what was uploaded through them is then missing from the list.`,
  examples: ['warrenctl recordings ls', 'warrenctl recordings ls --format=json'],
  async run(admin, flags) {
    const { recordings, not_shared_with: elsewhere } = await admin.client.call('GET /v1/recordings')
    if (elsewhere && elsewhere.length > 0) {
      process.stderr.write(
        `Note: this auth server's recording_dir is not shared with ${elsewhere.length} other live auth server(s) (${elsewhere.join(', ')}): ` +
          'recordings uploaded through them are not listed here. Auth servers on one backend need one shared recording_dir.\n',
      )
    }
    process.stdout.write(
      formatList(recordings, flags.format, {
        headers: ['Session ID', 'User', 'Login', 'Node', 'Started', 'Duration', 'Size'],
        row,
        empty: 'No recordings found.',
      }),
    )
  },
})

export const recordingsGet = ctlCommand({
  name: 'warrenctl recordings get',
  summary: 'one recording as an asciicast v2 file, on standard output',
  operands: ['ID'],
  flags: {},
  examples: ['warrenctl recordings get 3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21 > session.cast'],
  async run(admin, _flags, args) {
    const { cast } = await admin.client.call('GET /v1/recordings/:id', { params: { id: args[0] } })
    process.stdout.write(cast)
  },
})

function row(recording: RecordingJson): string[] {
  const size = `${recording.size} B${recording.complete ? '' : ' (partial)'}`
  const started = recording.started > 0 ? formatUtc(recording.started) : ''
  return [recording.session_id, recording.user ?? '', recording.login ?? '', recording.node, started, formatDuration(recording.duration_ms), size]
}
