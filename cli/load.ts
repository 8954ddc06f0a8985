// The code of each command and role, loaded when it runs: an agent (`warren start
// --roles=node`) then never evaluates the auth server, the proxy or the etcd client, and
// `warren version` evaluates none of them. In the single executable these stay in the one
// file but are only initialised on first use.

export const load = {
  start: () => import('./start.ts'),
  status: () => import('./status.ts'),
  ssh: () => import('./ssh.ts'),
  ls: () => import('./ls.ts'),
  play: () => import('./play.ts'),
  login: () => import('./login.ts'),
  knownHosts: () => import('./known-hosts.ts'),
  install: () => import('./install.ts'),
  warrenctl: () => import('./warrenctl.ts'),
  auth: () => import('../auth/server.ts'),
  proxy: () => import('../proxy/proxy.ts'),
  node: () => import('../agent/agent.ts'),
  sftpServer: () => import('../agent/sftp/stdio.ts'),
  agentSocket: () => import('../agent/agent-socket.ts'),
  diag: () => import('../shared/diag-server.ts'),
  metrics: {
    auth: () => import('../auth/metrics.ts'),
    proxy: () => import('../proxy/metrics.ts'),
    node: () => import('../agent/metrics.ts'),
  },
}
