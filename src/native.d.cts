/** Every package suffix with a prebuilt binary (`sockmap-<suffix>`). */
export declare const ALL_SUFFIXES: readonly string[]
/** Whether this Linux process runs on musl. */
export declare function isMusl(): boolean
/** The package suffix for a platform, CPU and C library (undefined: no prebuilt binary), and the host's name. */
export declare function suffixFor(
  platform: string,
  arch: string,
  musl: () => boolean,
): { suffix: string | undefined; host: string }
/** What the loader needs to know of the process it loads into. */
export interface Host {
  platform: string
  arch: string
  musl: () => boolean
  dir: string
  version: string
  env: Record<string, string | undefined>
  require: (id: string) => unknown
  exists: (path: string) => boolean
}
/** Loads the native addon for `host`; throws an Error with a `code` (`ERR_SOCKMAP_*`) when it cannot. */
export declare function loadNative(host: Host): unknown
/** Loads the native addon for this process. */
export declare function load(): unknown
