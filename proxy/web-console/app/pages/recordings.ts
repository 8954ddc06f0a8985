// Recorded terminal sessions: the list, and a replay in the browser at the recorded pace,
// with its size changes, a speed control and pause.

import { Terminal } from '@xterm/xterm'
import { call } from '../api.ts'
import { CastPlayer, parseCast } from '../cast.ts'
import { h, table } from '../dom.ts'
import { duration, utcTime } from '../format.ts'
import { onLeave, type RouteParams } from '../router.ts'
import { LINE_HEIGHT, TERMINAL_THEME } from './terminal.ts'

interface Recording {
  session_id: string
  user: string | null
  login: string | null
  node: string
  started: number
  duration_ms: number
  size: number
  complete: boolean
}

export async function recordingsPage(main: HTMLElement): Promise<void> {
  const { recordings } = await call<{ recordings: Recording[] }>('GET', 'recordings')
  const newest = [...recordings].sort((a, b) => b.started - a.started)
  main.append(
    h('h1', {}, 'Recordings'),
    newest.length === 0
      ? h('p', { class: 'empty' }, 'No recordings.')
      : table(
          ['Started', 'User', 'Login', 'Node', 'Duration', 'Complete', ''],
          newest.map((r) => [
            utcTime(r.started),
            r.user ?? '',
            r.login ?? '',
            r.node,
            duration(r.duration_ms),
            r.complete ? 'yes' : 'not yet',
            h('a', { href: `/web/recordings/${encodeURIComponent(r.session_id)}`, class: 'button replay' }, 'Replay'),
          ]),
        ),
  )
}

const SPEEDS = [0.5, 1, 2, 4, 8]

export async function replayPage(main: HTMLElement, params: RouteParams): Promise<void> {
  const id = params.path.id
  const answer = await call<string | { cast: string }>('GET', `recordings/${encodeURIComponent(id)}`)
  const cast = parseCast(typeof answer === 'string' ? answer : answer.cast)

  const screen = h('div', { class: 'terminal replay', id: 'replay' })
  const playButton = h('button', { type: 'button', id: 'replay-play' }, 'Pause')
  const speed = h('select', { 'aria-label': 'Speed', id: 'replay-speed' }, ...SPEEDS.map((s) => h('option', { value: s, selected: s === 1 }, `${s}×`)))
  const restart = h('button', { type: 'button' }, 'Restart')
  const clock = h('span', { class: 'state', id: 'replay-clock' })
  main.append(h('div', { class: 'terminal-bar' }, h('a', { href: '/web/recordings' }, 'Recordings'), h('strong', {}, id), playButton, speed, restart, clock), screen)

  const term = new Terminal({ cols: cast.width, rows: cast.height, lineHeight: LINE_HEIGHT, theme: TERMINAL_THEME, disableStdin: true, scrollback: 5000 })
  term.open(screen)
  const player = new CastPlayer(cast, {
    write: (data) => term.write(data),
    resize: (cols, rows) => term.resize(cols, rows),
    reset: () => {
      term.reset()
      term.resize(cast.width, cast.height)
    },
    progress: (at, ended) => {
      clock.textContent = `${duration(at * 1000)} of ${duration(player.duration * 1000)}${ended ? ' · ended' : ''}`
      if (ended) playButton.textContent = 'Play again'
      main.dataset.replay = ended ? 'ended' : 'playing'
    },
  })
  playButton.addEventListener('click', () => {
    if (player.playing) player.pause()
    else player.play()
    playButton.textContent = player.playing ? 'Pause' : 'Play'
  })
  speed.addEventListener('change', () => player.setSpeed(Number(speed.value)))
  restart.addEventListener('click', () => {
    player.restart()
    player.play()
    playButton.textContent = 'Pause'
  })
  onLeave(() => {
    player.stop()
    term.dispose()
  })
  player.play()
}
