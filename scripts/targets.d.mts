/** A release target: see targets.mjs. */
export interface Target {
  triple: string
  file: string
  suffix: string
  build: 'napi-cross' | 'zig' | null
  why: string
  elf: { machine: string; libc: 'gnu' | 'musl' } | null
}
export declare const GLIBC_FLOOR: string
export declare const TARGETS: Target[]
export declare function binaryName(t: Target): string
