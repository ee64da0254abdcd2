// Child processes for the benchmark: started, watched, measured through /proc and always
// stopped (every child is killed when this process exits, however it exits).
import { spawn, execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import net from 'node:net'

const live = new Set()
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
let unixDir = null // the run's private directory
let unixSeq = 0

function killAll() {
  for (const p of live) {
    try {
      process.kill(p.child.pid, 'SIGKILL')
    } catch {
      /* already gone */
    }
  }
  live.clear()
  if (unixDir) rmSync(unixDir, { recursive: true, force: true })
  unixDir = null
}
process.on('exit', killAll)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll()
    process.exit(130)
  })
}

/** A running child: its pid, its stdout lines, and a promise of its exit. */
export class Proc {
  constructor(name, cmd, args, { pin = false } = {}) {
    // setpriv makes the child die with this process even if it is killed outright;
    // taskset pins it (all its threads) to CPU 0. Both exec, so the pid is the program's.
    const pinned = pin ? ['taskset', '-c', '0'] : []
    const argv = ['setpriv', ['--pdeathsig', 'KILL', ...pinned, cmd, ...args]]
    this.name = name
    this.lines = []
    this.stderr = ''
    this.waiters = []
    this.child = spawn(argv[0], argv[1], { stdio: ['pipe', 'pipe', 'pipe'] })
    live.add(this)
    let partial = ''
    this.child.stdout.on('data', (d) => {
      partial += d.toString()
      const parts = partial.split('\n')
      partial = parts.pop()
      for (const line of parts) {
        this.lines.push(line)
        this.waiters = this.waiters.filter((w) => !w(line))
      }
    })
    this.child.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000)
    })
    this.child.stdin.on('error', () => {})
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        live.delete(this)
        this.code = code
        this.signal = signal
        if (partial) this.lines.push(partial)
        resolve(code)
      })
      this.child.on('error', (err) => {
        live.delete(this)
        this.stderr += String(err)
        this.code = -1
        resolve(-1)
      })
    })
  }

  get pid() {
    return this.child.pid
  }

  /** Resolves with the first stdout line matching `test`; rejects on exit or timeout. */
  waitLine(test, timeoutMs) {
    const found = this.lines.find(test)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.name}: no expected output within ${timeoutMs} ms ${this.stderr.trim()}`)),
        timeoutMs,
      )
      this.waiters.push((line) => {
        if (!test(line)) return false
        clearTimeout(timer)
        resolve(line)
        return true
      })
      this.exited.then(() => {
        clearTimeout(timer)
        reject(
          new Error(
            `${this.name} exited (${this.code ?? this.signal}): ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`,
          ),
        )
      })
    })
  }

  /** Waits for the `ready` line. */
  ready(timeoutMs = 10000) {
    return this.waitLine((l) => l.trim() === 'ready', timeoutMs)
  }

  /** The last stdout line that parses as a JSON object whose prog matches, or undefined. */
  json(prog) {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      try {
        const v = JSON.parse(this.lines[i])
        if (!prog || v.prog === prog) return v
      } catch {
        /* not JSON */
      }
    }
    return undefined
  }

  /** Waits for exit, killing the child after `timeoutMs`. */
  async finish(timeoutMs) {
    const timer = setTimeout(() => this.kill('SIGKILL'), timeoutMs)
    await this.exited
    clearTimeout(timer)
    return this
  }

  /** Stops the child: SIGTERM and stdin EOF, then SIGKILL after 3 s. */
  async stop() {
    if (!live.has(this)) return this
    this.kill('SIGTERM')
    try {
      this.child.stdin.end()
    } catch {
      /* closed */
    }
    return this.finish(3000)
  }

  kill(sig) {
    try {
      process.kill(this.child.pid, sig)
    } catch {
      /* already gone */
    }
  }

  /** utime + stime of the process (all threads, reaped children excluded) in seconds. */
  cpuSecs() {
    const f = procStat(this.pid)
    if (!f) throw new Error(`${this.name}: no /proc/${this.pid}/stat (the process is gone)`)
    return (f[11] + f[12]) / CLK_TCK // fields 14 and 15 of stat(5)
  }

  /**
   * utime + stime of the process and of every process below it (forked workers, a master's children), plus what
   * its reaped children used, in seconds.
   */
  treeCpuSecs() {
    const own = procStat(this.pid)
    if (!own) return 0
    let secs = (own[13] + own[14]) / CLK_TCK // cutime + cstime: children already reaped
    for (const pid of [this.pid, ...descendants(this.pid)]) {
      const f = procStat(pid)
      if (f) secs += (f[11] + f[12]) / CLK_TCK
    }
    return secs
  }

  /** {@link Proc.stop}, then SIGKILL for whatever it had forked and left running. */
  async stopTree() {
    const below = live.has(this) ? descendants(this.pid) : []
    await this.stop()
    for (const pid of below) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        /* already gone */
      }
    }
    return this
  }

  /** VmRSS and VmHWM in bytes. */
  mem() {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8')
    const kb = (key) => Number((new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status) ?? [0, 0])[1]) * 1024
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
  }
}

/** The numeric fields of /proc/PID/stat after the command name (field 3 of stat(5) is index 0), or null. */
function procStat(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map((x) => Number(x))
  } catch {
    return null
  }
}

/** Every live process below `pid` (children, their children...). */
function descendants(pid) {
  const children = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const f = procStat(name)
    if (f) children.set(f[1], [...(children.get(f[1]) ?? []), Number(name)])
  }
  const out = []
  const todo = [pid]
  while (todo.length) {
    for (const c of children.get(todo.pop()) ?? []) {
      out.push(c)
      todo.push(c)
    }
  }
  return out
}

/** Runs a command to completion (killed after `timeoutMs`) and returns the Proc. */
export function run(name, cmd, args, opts = {}, timeoutMs = 120000) {
  const p = new Proc(name, cmd, args, opts)
  try {
    p.child.stdin.end()
  } catch {
    /* closed */
  }
  return p.finish(timeoutMs)
}

let nextPort = 20000 + Math.floor(Math.random() * 8000)

/** A free loopback port below the ephemeral range (so no outgoing connection holds it). */
export async function freePort() {
  for (let i = 0; i < 200; i++) {
    const port = nextPort
    nextPort = nextPort >= 32000 ? 20000 : nextPort + 1
    const ok = await new Promise((resolve) => {
      const s = net.createServer()
      s.once('error', () => resolve(false))
      s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)))
    })
    if (ok) return port
  }
  throw new Error('no free loopback port')
}

/** A fresh directory for files of this run (sockets, configurations), removed when this process exits. */
export function privateDir(name) {
  unixDir ??= mkdtempSync(path.join(tmpdir(), 'sockmap-bench-'))
  const dir = path.join(unixDir, `${name}-${unixSeq++}`)
  mkdirSync(dir)
  return dir
}

/** A fresh path for a Unix socket named after `name`, in the run's private directory (see {@link privateDir}). */
export function unixPath(name) {
  unixDir ??= mkdtempSync(path.join(tmpdir(), 'sockmap-bench-'))
  return path.join(unixDir, `${name}-${unixSeq++}.sock`)
}

/**
 * Starts the echo server of a load generator (`bin echo --listen 127.0.0.1:PORT ...args`) and, unless `start` is
 * null, a proxy in front of it (`start(port, echoPort)`), both pushed onto `started` (to be stopped); resolves with
 * `{ echo, proxy, port }`, `port` being where a client connects.
 */
export async function echoBehind(started, bin, args, start) {
  const echoPort = await freePort()
  const echo = new Proc(`${path.basename(bin)} echo`, bin, ['echo', '--listen', `127.0.0.1:${echoPort}`, ...args])
  started.push(echo)
  await echo.ready()
  if (!start) return { echo, proxy: null, port: echoPort }
  const port = await freePort()
  const proxy = await start(port, echoPort)
  started.push(proxy)
  return { echo, proxy, port }
}

/** Resolves once a TCP connect to the loopback `port` succeeds; rejects after `timeoutMs`. */
export async function waitPort(port, timeoutMs = 10000) {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port })
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`port ${port} not listening after ${timeoutMs} ms`)
}

/** The median of a list of numbers (NaN when empty). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * Waits until something listens on the loopback `port` (read from /proc, no connection made); with `udp`, until a
 * UDP socket is bound to it.
 */
export async function waitListen(port, timeoutMs = 10000, { udp = false } = {}) {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `
  const [file, state] = udp ? ['/proc/net/udp', / 07 /] : ['/proc/net/tcp', / 0A /]
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    const table = readFileSync(file, 'utf8').split('\n')
    if (table.some((l) => l.includes(`0100007F${hex}`) && state.test(l))) return
    await sleep(20)
  }
  throw new Error(`nothing ${udp ? 'is bound to' : 'listens on'} ${port} after ${timeoutMs} ms`)
}

/** The lines a benchmark's report starts with: a comment with the machine and the run, then the machine's lines. */
export function headerLines(header, reps, quick, t0) {
  const secs = ((Date.now() - t0) / 1000).toFixed(0)
  return [
    `<!-- ${header.replace(/\n/g, '; ')}; ${reps} repetitions${quick ? ', --quick' : ''}; ${secs} s -->`,
    header
      .split('\n')
      .map((l) => `${l}  `)
      .join('\n'),
  ]
}

/** The first line a shell command prints (with its errors), or `n/a`. */
export function firstLine(cmd) {
  try {
    return execFileSync('bash', ['-c', `${cmd} 2>&1 | head -1`])
      .toString()
      .trim()
  } catch {
    return 'n/a'
  }
}

/** The machine's CPU model and count, and its kernel: the first line of a report's header. */
export function cpuLine() {
  const cpu = (/model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8')) ?? [])[1] ?? '?'
  return `CPU: ${cpu} × ${execFileSync('nproc').toString().trim()}; kernel ${firstLine('uname -r')}`
}

/** Writes a run's raw results as JSON to `file`, or to `benchmark/results/PREFIX-<time>.json`; returns the path. */
export function saveResults(root, file, prefix, data) {
  const out =
    file ?? path.join(root, 'benchmark/results', `${prefix}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  mkdirSync(path.dirname(out), { recursive: true })
  writeFileSync(out, JSON.stringify(data, null, 1))
  return out
}

/**
 * Runs `redis-benchmark -t set,get -d 64 -r 100000 -c 50 -n N -P DEPTH` against `port`; returns its SET and GET rows
 * ({ SET, GET }), each with the CSV's columns (`rps`, `p50_latency_ms`, `p99_latency_ms`...).
 */
export async function redisBenchmark(port, n, depth) {
  const c = await run(
    'redis-benchmark',
    'redis-benchmark',
    [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-t',
      'set,get',
      '-d',
      '64',
      '-r',
      '100000',
      '-c',
      '50',
      '-n',
      String(n),
      '-P',
      String(depth),
      '--csv',
    ],
    {},
    300000,
  )
  const lines = c.lines.filter((l) => l.startsWith('"'))
  const head = (lines.find((l) => l.startsWith('"test"')) ?? '').split(',').map((h) => h.replace(/"/g, ''))
  const out = {}
  for (const l of lines) {
    const cells = l.split(',').map((x) => x.replace(/"/g, ''))
    if (cells[0] === 'SET' || cells[0] === 'GET')
      out[cells[0]] = Object.fromEntries(head.map((h, i) => [h, Number(cells[i])]))
  }
  if (!out.SET || !out.GET)
    throw new Error(`redis-benchmark (exit ${c.code}): ${c.stderr.trim().slice(-160) || c.lines.join(' ').slice(-160)}`)
  return out
}
