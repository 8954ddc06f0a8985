// A terminal in the browser to a node, as a login the user's roles allow: xterm.js over the
// console's WebSocket. Bytes go both ways in binary frames; the browser sends its size in
// text frames whenever it changes, the server a text frame when the session ends.

import { FitAddon } from '@xterm/addon-fit'
import { Terminal } from '@xterm/xterm'
import { currentSession } from '../api.ts'
import { h } from '../dom.ts'
import { chosenInApp, onLeave, type RouteParams } from '../router.ts'

/** A text frame from the server. */
type ServerMessage = { type: 'exit'; status: number | null; signal?: string } | { type: 'error'; message?: string }

export const TERMINAL_THEME = { background: '#101418', foreground: '#e6e6e6', cursor: '#f0c674' }
/** A little room between rows, so underscores are not cut off at the bottom of theirs. */
export const LINE_HEIGHT = 1.2

export function terminalPage(main: HTMLElement, params: RouteParams): void {
  const node = params.query.get('node') ?? ''
  const login = params.query.get('login') ?? ''
  if (chosenInApp()) {
    openTerminal(main, node, login)
    return
  }
  // Opened from outside the app (another site's link, a reload): a shell of another's
  // choosing, in the user's name, opens only when the user says so.
  const open = h('button', { type: 'button', id: 'terminal-open' }, 'Open shell')
  open.addEventListener('click', () => {
    main.replaceChildren()
    openTerminal(main, node, login)
  })
  main.append(h('div', { class: 'card narrow', id: 'terminal-confirm' }, h('p', {}, 'Open a shell on ', h('strong', {}, node), ' as ', h('strong', {}, login), '?'), open))
}

function openTerminal(main: HTMLElement, node: string, login: string): void {
  const state = h('span', { class: 'state', id: 'terminal-state' }, 'connecting…')
  const screen = h('div', { class: 'terminal', id: 'terminal' })
  main.append(h('div', { class: 'terminal-bar' }, h('strong', {}, `${login}@${node}`), state), screen)

  const term = new Terminal({ cursorBlink: true, fontSize: 14, lineHeight: LINE_HEIGHT, theme: TERMINAL_THEME, scrollback: 5000 })
  const fit = new FitAddon()
  term.loadAddon(fit)
  term.open(screen)
  // The size as `stty size` prints it, rows then columns, for anyone checking what the node sees.
  const showSize = () => {
    screen.dataset.size = `${term.rows} ${term.cols}`
  }
  fit.fit()
  showSize()
  term.focus()

  const query = new URLSearchParams({ node, login, cols: String(term.cols), rows: String(term.rows), csrf: currentSession()?.csrf_token ?? '' })
  const socket = new WebSocket(`wss://${location.host}/web/api/terminal?${query}`)
  socket.binaryType = 'arraybuffer'
  const encoder = new TextEncoder()
  let ended = false
  const end = (text: string, failed: boolean) => {
    if (ended) return
    ended = true
    state.textContent = text
    state.classList.toggle('failed', failed)
    term.options.cursorBlink = false
  }

  socket.addEventListener('open', () => {
    state.textContent = 'connected'
  })
  socket.addEventListener('message', (event) => {
    if (event.data instanceof ArrayBuffer) {
      term.write(new Uint8Array(event.data))
      return
    }
    const message = JSON.parse(String(event.data)) as ServerMessage
    if (message.type === 'exit') end(message.signal ? `session ended (killed by ${message.signal})` : `session ended (exit status ${message.status ?? 'unknown'})`, false)
    else end(message.message ?? 'refused', true)
  })
  socket.addEventListener('close', () => end('disconnected', true))

  const send = (data: string | Uint8Array<ArrayBuffer>) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(data)
  }
  term.onData((data) => send(encoder.encode(data)))
  term.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0))))
  term.onResize(({ cols, rows }) => {
    showSize()
    send(JSON.stringify({ type: 'resize', cols, rows }))
  })
  // Copy on select, as in most terminals; paste is xterm's own (the browser's paste event).
  term.onSelectionChange(() => {
    const selected = term.getSelection()
    if (selected) navigator.clipboard?.writeText(selected).catch(() => {})
  })
  const refit = () => fit.fit()
  window.addEventListener('resize', refit)
  onLeave(() => {
    window.removeEventListener('resize', refit)
    socket.close()
    term.dispose()
  })
}
