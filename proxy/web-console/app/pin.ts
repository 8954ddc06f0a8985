// The CA pin that `warren start --ca-pin` takes: sha256 over a certificate's
// SubjectPublicKeyInfo (DER), as `warrenctl status` prints it, computed in the browser
// from the cluster's CA certificate (PEM).

/** The DER element at `offset`: where its contents start and end. */
function element(der: Uint8Array, offset: number): { start: number; end: number } {
  let length = der[offset + 1]
  let start = offset + 2
  if (length & 0x80) {
    const bytes = length & 0x7f
    length = 0
    for (let i = 0; i < bytes; i++) length = length * 256 + der[start + i]
    start += bytes
  }
  return { start, end: start + length }
}

/** The SubjectPublicKeyInfo of an X.509 certificate: the 7th field of tbsCertificate, or the 6th without a version. */
function spki(der: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const tbs = element(der, element(der, 0).start)
  let at = tbs.start
  const fields: { offset: number; end: number }[] = []
  while (at < tbs.end && fields.length < 7) {
    const { end } = element(der, at)
    fields.push({ offset: at, end })
    at = end
  }
  const index = der[fields[0].offset] === 0xa0 ? 6 : 5
  return der.slice(fields[index].offset, fields[index].end)
}

export async function caPin(pem: string): Promise<string> {
  const base64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '')
  const der = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', spki(der)))
  return `sha256:${Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')}`
}
