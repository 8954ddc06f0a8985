// The headers of every answer under /web: the console is one external script (no inline
// script, no eval), framed by nobody, and sends no Referer (an invitation's URL carries its
// token). xterm sets the styles of its rows inline, hence 'unsafe-inline' for styles only.

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
    // Answers carry sessions' CSRF tokens and people's data: no cache keeps them.
    'cache-control': 'no-store',
  }
}
