// The headers of every answer under /web: the console is one external script (no inline
// script, no eval), framed by nobody, sends no Referer (an invitation's URL carries its
// token), and is reached over HTTPS only (HSTS: a browser that has seen it asks no plain-HTTP
// answer, whose cookies an attacker on the path could set, of this host again). xterm sets the styles of its rows inline, hence 'unsafe-inline' for styles only.

const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ')

export function securityHeaders(): Record<string, string> {
  return {
    'content-security-policy': CONTENT_SECURITY_POLICY,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    // A year, for this host alone: other hosts of its domain are not the console's to decide.
    'strict-transport-security': 'max-age=31536000',
    // Answers carry sessions' CSRF tokens and people's data: no cache keeps them.
    'cache-control': 'no-store',
  }
}
