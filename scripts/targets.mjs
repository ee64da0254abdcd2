// The release targets: each Rust target triple, the npm package suffix napi-rs gives it, how this Linux x64 machine
// builds it, and the ELF facts its binary must show. Shared by the build script and the binary checks.

/** The glibc version the gnu binaries may need at most (napi-rs's cross toolchain links against glibc 2.17). */
export const GLIBC_FLOOR = '2.17'

/**
 * @typedef {object} Target
 * @property {string} triple Rust target triple.
 * @property {string} suffix The npm package suffix (`sockmap-<suffix>`) and the binary's middle name.
 * @property {'napi-cross' | 'zig' | null} build How this machine builds it (`null`: only on its own CI runner).
 * @property {string} why For targets built elsewhere: what stops this machine.
 * @property {{ machine: string, libc: 'gnu' | 'musl' } | null} elf What `readelf` must show (Linux targets).
 * @property {string} file What `file` must say of the binary.
 */

/** @type {Target[]} */
export const TARGETS = [
  {
    triple: 'x86_64-unknown-linux-gnu',
    file: 'ELF 64-bit LSB shared object, x86-64',
    suffix: 'linux-x64-gnu',
    build: 'napi-cross',
    why: '',
    elf: { machine: 'Advanced Micro Devices X86-64', libc: 'gnu' },
  },
  {
    triple: 'aarch64-unknown-linux-gnu',
    file: 'ELF 64-bit LSB shared object, ARM aarch64',
    suffix: 'linux-arm64-gnu',
    build: 'napi-cross',
    why: '',
    elf: { machine: 'AArch64', libc: 'gnu' },
  },
  {
    triple: 'x86_64-unknown-linux-musl',
    file: 'ELF 64-bit LSB shared object, x86-64',
    suffix: 'linux-x64-musl',
    build: 'zig',
    why: '',
    elf: { machine: 'Advanced Micro Devices X86-64', libc: 'musl' },
  },
  {
    triple: 'aarch64-unknown-linux-musl',
    file: 'ELF 64-bit LSB shared object, ARM aarch64',
    suffix: 'linux-arm64-musl',
    build: 'zig',
    why: '',
    elf: { machine: 'AArch64', libc: 'musl' },
  },
  {
    triple: 'x86_64-apple-darwin',
    file: 'Mach-O 64-bit x86_64 dynamically linked shared library',
    suffix: 'darwin-x64',
    build: 'zig',
    why: '',
    elf: null,
  },
  {
    triple: 'aarch64-apple-darwin',
    file: 'Mach-O 64-bit arm64 dynamically linked shared library',
    suffix: 'darwin-arm64',
    build: 'zig',
    why: '',
    elf: null,
  },
  {
    triple: 'x86_64-pc-windows-msvc',
    file: 'PE32+ executable (DLL) (GUI) x86-64, for MS Windows',
    suffix: 'win32-x64-msvc',
    build: null,
    why: "linking needs Microsoft's CRT and Windows SDK libraries, which cargo-xwin downloads from Microsoft's servers (not reachable here)",
    elf: null,
  },
  {
    triple: 'aarch64-pc-windows-msvc',
    file: 'PE32+ executable (DLL) (GUI) Aarch64, for MS Windows',
    suffix: 'win32-arm64-msvc',
    build: null,
    why: "linking needs Microsoft's CRT and Windows SDK libraries, which cargo-xwin downloads from Microsoft's servers (not reachable here)",
    elf: null,
  },
]

/**
 * The binary's file name, as napi-rs names it.
 * @param {Target} t
 */
export const binaryName = (t) => `sockmap.${t.suffix}.node`
