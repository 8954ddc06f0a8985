// The list of the web console's built files, shared by the build (build.ts) and the proxy
// that serves them (assets.ts).

/** The manifest's file name, beside the files it lists. */
export const MANIFEST = 'manifest.json'

/** One file of the console. */
export interface ManifestEntry {
  /** Its path under /web/: `index.html` or `assets/app-HASH.js`. */
  path: string
  /** The stored file, brotli-compressed, relative to the manifest. */
  file: string
  /** Its size uncompressed, in bytes. */
  size: number
}

/** The prefix of the console's files among the single executable's assets. */
export const SEA_ASSET_PREFIX = 'web-console/'
