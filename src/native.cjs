// @ts-check
'use strict'
// Finds and loads sockmap's native addon. In order: the file SOCKMAP_NATIVE_PATH names; a local build next to this
// file (`sockmap.<suffix>.node`, what `npm run build` leaves in src/ and dist/); the per-platform package
// `sockmap-<suffix>` that npm installed as an optional dependency. When none is there it throws an error that names
// the platform, the package it looked for and what to do.

const { existsSync, readFileSync } = require('node:fs')
const { join } = require('node:path')

/**
 * The package suffix of each platform and CPU with a prebuilt binary; on Linux, by C library.
 * @type {Record<string, string | { gnu: string, musl: string }>}
 */
const SUFFIXES = {
  'linux-x64': { gnu: 'linux-x64-gnu', musl: 'linux-x64-musl' },
  'linux-arm64': { gnu: 'linux-arm64-gnu', musl: 'linux-arm64-musl' },
  'darwin-x64': 'darwin-x64',
  'darwin-arm64': 'darwin-arm64',
  'win32-x64': 'win32-x64-msvc',
  'win32-arm64': 'win32-arm64-msvc',
}

/** Every package suffix with a prebuilt binary. */
const ALL_SUFFIXES = Object.values(SUFFIXES).flatMap((s) => (typeof s === 'string' ? [s] : [s.gnu, s.musl]))

/**
 * Whether this Linux process runs on musl: `/usr/bin/ldd` names its C library; failing that, the process report has
 * a glibc runtime version only on glibc.
 * @returns {boolean}
 */
function isMusl() {
  try {
    const ldd = readFileSync('/usr/bin/ldd', 'utf8')
    if (ldd.includes('musl')) return true
    if (ldd.includes('GNU C Library') || ldd.includes('GLIBC')) return false
  } catch {
    // no ldd: ask the process report
  }
  const report = /** @type {{ header?: { glibcVersionRuntime?: string } } | undefined} */ (process.report?.getReport())
  return !report?.header?.glibcVersionRuntime
}

/**
 * The package suffix for a platform, CPU and C library, or undefined when there is no prebuilt binary for it.
 * @param {string} platform `process.platform`
 * @param {string} arch `process.arch`
 * @param {() => boolean} musl whether the C library is musl (asked on Linux only)
 * @returns {{ suffix: string | undefined, host: string }}
 */
function suffixFor(platform, arch, musl) {
  const entry = SUFFIXES[`${platform}-${arch}`]
  if (entry === undefined) return { suffix: undefined, host: `${platform}-${arch}` }
  if (typeof entry === 'string') return { suffix: entry, host: `${platform}-${arch}` }
  const libc = musl() ? 'musl' : 'gnu'
  return { suffix: entry[libc], host: `${platform}-${arch} (${libc === 'musl' ? 'musl' : 'glibc'})` }
}

/**
 * An Error with a `code`, and the errors that led to it as `cause`.
 * @param {string} message
 * @param {string} code
 * @param {unknown} [cause]
 */
function failure(message, code, cause) {
  const err = /** @type {Error & { code: string }} */ (new Error(message, cause === undefined ? undefined : { cause }))
  err.code = code
  return err
}

/**
 * @typedef {object} Host
 * @property {string} platform `process.platform`
 * @property {string} arch `process.arch`
 * @property {() => boolean} musl whether the C library is musl
 * @property {string} dir the folder local builds sit in
 * @property {string} version the version of sockmap, which the platform package must have too
 * @property {Record<string, string | undefined>} env the environment
 * @property {(id: string) => unknown} require loads a module or addon
 * @property {(path: string) => boolean} exists whether a file exists
 */

/**
 * Loads the native addon for `host`.
 * @param {Host} host
 * @returns {unknown} the addon's exports
 */
function loadNative(host) {
  const explicit = host.env.SOCKMAP_NATIVE_PATH
  if (explicit) {
    try {
      return host.require(explicit)
    } catch (e) {
      throw failure(
        `sockmap: cannot load the native binary SOCKMAP_NATIVE_PATH names (${explicit}): ${errorMessage(e)}`,
        'ERR_SOCKMAP_NATIVE_LOAD',
        e,
      )
    }
  }
  const { suffix, host: where } = suffixFor(host.platform, host.arch, host.musl)
  if (suffix === undefined) {
    throw failure(
      `sockmap has no prebuilt native binary for ${where}; there is one for ${ALL_SUFFIXES.join(', ')}. ` +
        'To use sockmap here, build it from source (Rust stable and Node.js: npm ci && npm run build in a clone of ' +
        'the sockmap repository) and set SOCKMAP_NATIVE_PATH to the built .node file.',
      'ERR_SOCKMAP_UNSUPPORTED_PLATFORM',
    )
  }
  const file = `sockmap.${suffix}.node`
  const local = join(host.dir, file)
  if (host.exists(local)) return host.require(local)

  const pkg = `sockmap-${suffix}`
  let binding
  try {
    binding = host.require(pkg)
  } catch (e) {
    const code = /** @type {{ code?: unknown }} */ (e)?.code
    if (code === 'MODULE_NOT_FOUND' && errorMessage(e).includes(`'${pkg}'`)) {
      throw failure(
        `sockmap: no native binary for ${where}: the package ${pkg} is not installed. npm installs it with sockmap ` +
          `as an optional dependency that matches the platform; it is missing when optional dependencies were ` +
          `omitted (--omit=optional), when the lockfile or node_modules came from another platform, or when the ` +
          `app was packaged for another platform or CPU. Install it: npm install ${pkg}@${host.version} ` +
          `(or delete node_modules and package-lock.json and run npm install again; to package for another ` +
          `platform, install with --os and --cpu set to it).`,
        'ERR_SOCKMAP_NATIVE_MISSING',
        e,
      )
    }
    throw failure(
      `sockmap: the native binary of ${pkg} (${where}) failed to load: ${errorMessage(e)}`,
      'ERR_SOCKMAP_NATIVE_LOAD',
      e,
    )
  }
  const installed = /** @type {{ version?: string }} */ (host.require(`${pkg}/package.json`)).version
  if (installed !== host.version) {
    throw failure(
      `sockmap ${host.version} needs ${pkg}@${host.version}, but ${pkg}@${installed} is installed: ` +
        `npm install ${pkg}@${host.version}`,
      'ERR_SOCKMAP_NATIVE_VERSION',
    )
  }
  return binding
}

/** @param {unknown} e */
function errorMessage(e) {
  return e instanceof Error ? e.message : String(e)
}

/** Loads the native addon for this process. */
function load() {
  const { version } = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8'))
  return loadNative({
    platform: process.platform,
    arch: process.arch,
    musl: isMusl,
    dir: __dirname,
    version,
    env: process.env,
    require,
    exists: existsSync,
  })
}

module.exports = { ALL_SUFFIXES, isMusl, suffixFor, loadNative, load }
