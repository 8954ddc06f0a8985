// The web console: one page that draws the console's pages by path (router.ts). Pages other
// than login and an invitation need a session; without one the login page is shown, and
// after it the page that was asked for.

import '@xterm/xterm/css/xterm.css'
import './style.css'
import { call, currentSession, loadSession, setSession, whenLoggedOut } from './api.ts'
import { errorLine, h, replace } from './dom.ts'
import { auditPage } from './pages/audit.ts'
import { invitePage } from './pages/invite.ts'
import { loginPage } from './pages/login.ts'
import { nodesPage } from './pages/nodes.ts'
import { recordingsPage, replayPage } from './pages/recordings.ts'
import { terminalPage } from './pages/terminal.ts'
import { tokensPage } from './pages/tokens.ts'
import { usersPage } from './pages/users.ts'
import { leavePage, navigate, type Render, route, startRouter } from './router.ts'

/** Pages anyone may open; the others need a session. */
const PUBLIC = new Set<Render>([loginPage, invitePage])

route('/web/login', loginPage)
route('/web/invite/:token', invitePage)
route('/web/nodes', nodesPage)
route('/web/terminal', terminalPage)
route('/web/audit', auditPage)
route('/web/recordings', recordingsPage)
route('/web/recordings/:id', replayPage)
route('/web/tokens', tokensPage)
route('/web/users', usersPage)

const header = h('header', { class: 'top' })
const main = h('main')
function drawHeader(): void {
  const session = currentSession()
  const link = (path: string, label: string) => h('a', { href: path, 'aria-current': location.pathname.startsWith(path) ? 'page' : undefined }, label)
  replace(
    header,
    h('a', { href: '/web/nodes', class: 'brand' }, 'Warren'),
    session &&
      h(
        'nav',
        {},
        link('/web/nodes', 'Nodes'),
        link('/web/audit', 'Audit'),
        link('/web/recordings', 'Recordings'),
        session.editor && link('/web/tokens', 'Tokens'),
        session.editor && link('/web/users', 'Users'),
      ),
    session && h('span', { class: 'who' }, session.user, h('button', { type: 'button', class: 'logout', onclick: logout }, 'Log out')),
  )
}

async function logout(): Promise<void> {
  try {
    await call('POST', 'logout')
  } finally {
    setSession(null)
    navigate('/web/login')
  }
}

async function display(render: Render, params: Parameters<Render>[1]): Promise<void> {
  leavePage()
  if (!PUBLIC.has(render) && !currentSession()) {
    navigate(`/web/login?next=${encodeURIComponent(location.pathname + location.search)}`, true)
    return
  }
  document.body.dataset.page = location.pathname.split('/')[2] ?? ''
  drawHeader()
  // Each page draws into an element of its own: a page still loading when the next is shown
  // then draws into one that is no longer on the screen.
  const page = h('div', { class: 'page' })
  replace(main, page)
  try {
    await render(page, params)
  } catch (error) {
    page.append(errorLine(error))
  }
}

async function start(): Promise<void> {
  document.body.append(header, main)
  whenLoggedOut(() => navigate(`/web/login?next=${encodeURIComponent(location.pathname + location.search)}`))
  try {
    await loadSession()
  } catch (error) {
    main.append(errorLine(error))
  }
  startRouter(display)
}

void start()
