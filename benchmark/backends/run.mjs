// The engine's two backends (epoll, io_uring) side by side with their peers, in one run,
// interleaved, repeated; medians with ranges printed as markdown tables. Start it through
// run.sh (`npm run bench:backends`), which installs the peers and builds the native tools:
//
//   benchmark/backends/run.sh [--quick] [--reps N] [--only redis,many,bulk,counts]
//                             [--redis-n1 N] [--redis-n16 N] [--many-conns C] [--many-secs S]
//                             [--raw-secs S] [--quiet PCT] [--quiet-wait S] [--json FILE]
//
// --quiet PCT: before every round, wait until others leave the CPUs less than PCT % busy over
// 2 s, at most --quiet-wait seconds (default 120), then run anyway; the busy % is printed.
//
// Sections (see BENCHMARKS.md "## Backends: io_uring and epoll"):
//   redis   redis-benchmark -t set,get -d 64 -r 100000 -c 50 -n N at -P 1 and -P 16: direct,
//           HAProxy (TCP, nbthread 1), twemproxy (one server), engine `proxy --mode raw` with
//           --backend epoll and io_uring. Requests/s, proxy and redis-server CPU-s per million
//           requests, and the engine's kernel entries (BackendStats::waits) per request.
//   many    C connections (1,000) each doing 64-byte request -> 64-byte response, closed loop
//           (many-pingpong), to a one-thread echo server: direct, HAProxy, engine epoll and
//           io_uring. Round trips/s, round-trip p50/p99/p99.9, proxy CPU-s per million, waits.
//   bulk    iperf3 1 and 4 streams: benchmark/engine/run.mjs --only raw with one engine row per
//           backend.
//   counts  a separate, shorter run of redis -P 1 and of `many` per proxy under `perf stat`
//           (syscall and io_uring tracepoints, context switches), per request; not timed.
//
// Every repetition runs each row once, in a fixed order (A B C D E, A B C D E, ...).
import { readFileSync, rmSync, existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import {
  Proc,
  run,
  freePort,
  waitListen,
  headerLines,
  firstLine,
  cpuLine,
  saveResults,
  redisBenchmark,
  echoBehind,
} from '../engine/procs.mjs'
import { configFile, have, startHaproxy, startRedis } from '../engine/peers.mjs'
import { recorder, table } from '../engine/tables.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const BIN = path.join(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target'), 'release')
const PROXY_BIN = path.join(BIN, 'examples/proxy')
const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string' },
    only: { type: 'string', default: 'redis,many,bulk,counts' },
    'redis-n1': { type: 'string' },
    'redis-n16': { type: 'string' },
    'many-conns': { type: 'string', default: '1000' },
    'many-secs': { type: 'string' },
    'raw-secs': { type: 'string' },
    quiet: { type: 'string' },
    'quiet-wait': { type: 'string', default: '120' },
    json: { type: 'string' },
  },
})
const Q = opt.quick
const CFG = {
  reps: Number(opt.reps ?? (Q ? 1 : 3)),
  redisN: {
    1: Number(opt['redis-n1'] ?? (Q ? 20000 : 300000)),
    16: Number(opt['redis-n16'] ?? (Q ? 200000 : 1000000)),
  },
  manyConns: Number(opt['many-conns']),
  manySecs: Number(opt['many-secs'] ?? (Q ? 1 : 5)),
  manyWarmup: Q ? 0.5 : 1,
  rawSecs: Number(opt['raw-secs'] ?? (Q ? 2 : 10)),
  countsRedisN: Q ? 10000 : 100000,
  quiet: opt.quiet === undefined ? null : Number(opt.quiet),
  quietWaitSecs: Number(opt['quiet-wait']),
}
if (!(CFG.reps >= 1 && CFG.reps <= 20)) throw new RangeError('--reps must be 1..20')
if (!(CFG.manyConns >= 1 && CFG.manyConns <= 20000)) throw new RangeError('--many-conns must be 1..20000')
const only = new Set(opt.only.split(','))
const DEPTHS = [1, 16]

// ---------------------------------------------------------------- results and formatting

const { results, note: record, med, cell, row } = recorder() // "section/.../metric" -> samples; "row/error" -> message
const note = (key, v) => {
  if (Number.isFinite(v)) record(key, v)
}

const ratio = (a, b, digits = 2) => (a !== undefined && b !== undefined && b !== 0 ? (a / b).toFixed(digits) : '—')

function log(msg) {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

/** Runs `body(started)` for one cell (retried once on error); stops everything it started. */
const cellRun = (key, body) => row(key, null, body)

/** Percent of all CPUs busy over 2 s, from /proc/stat. */
async function busyPct() {
  const read = () => readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const a = read()
  await new Promise((r) => setTimeout(r, 2000))
  const b = read()
  const d = b.map((v, i) => v - a[i])
  const total = d.reduce((x, y) => x + y, 0)
  return total > 0 ? 100 - (100 * (d[3] + d[4])) / total : 0
}

const busyLog = []
/** With --quiet PCT: waits (at most quietWaitSecs) until others leave the CPUs less than PCT % busy. */
async function quiet(label) {
  if (CFG.quiet === null) return
  const until = Date.now() + CFG.quietWaitSecs * 1000
  let b = await busyPct()
  while (b >= CFG.quiet && Date.now() < until) {
    log(`  CPUs ${b.toFixed(0)} % busy before ${label}, waiting for less than ${CFG.quiet} %`)
    b = await busyPct()
  }
  busyLog.push(b)
}

// ---------------------------------------------------------------- proxies

const ENGINE_BACKENDS = ['epoll', 'io_uring']
const engineMissing = existsSync(PROXY_BIN) ? null : `n/a: ${PROXY_BIN} not built`

/** Starts the engine proxy (raw mode) with `backend`. Its `stop()` leaves the stats line in stderr. */
async function startEngine(listen, upstream, backend, extra = []) {
  if (engineMissing) throw new Error(engineMissing)
  const p = new Proc(`engine ${backend}`, PROXY_BIN, [
    '--listen',
    `127.0.0.1:${listen}`,
    '--upstream',
    `127.0.0.1:${upstream}`,
    '--mode',
    'raw',
    '--backend',
    backend,
    ...extra,
  ])
  await p.ready().catch(async (e) => {
    await p.stop()
    throw e
  })
  return p
}

/** The engine's counters from the line it prints on exit. */
function engineStats(p) {
  const m = /backend=(\S+) waits=(\d+) starved=(\d+) stale=(\d+)/.exec(p.stderr)
  if (!m) throw new Error(`no stats line from ${p.name}: ${p.stderr.trim().slice(-200)}`)
  return { kind: m[1], waits: Number(m[2]), starved: Number(m[3]), stale: Number(m[4]) }
}

async function startNutcracker(listen, upstream) {
  const file = configFile(
    'nutcracker.yml',
    `pool:
  listen: 127.0.0.1:${listen}
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  server_connections: 1
  servers:
   - 127.0.0.1:${upstream}:1
`,
  )
  const stats = await freePort()
  const p = new Proc('nutcracker', 'nutcracker', [
    '-c',
    file,
    '-s',
    String(stats),
    '-a',
    '127.0.0.1',
    '-o',
    '/dev/null',
    '-v',
    '0',
    '-p',
    `${file}.pid`,
  ])
  await waitListen(listen).catch(async (e) => {
    await p.stop()
    throw new Error(`${e.message} ${p.stderr}`)
  })
  return p
}

/** Proxy rows: key, label, start(listen, upstream) or null for direct. */
const REDIS_ROWS = [
  ['direct', 'direct (redis-benchmark → redis-server)', null],
  ['haproxy', 'HAProxy 2.6 TCP, nbthread 1', have('haproxy') ? (l, u) => startHaproxy(l, u) : null],
  ['twemproxy', 'twemproxy 0.5 (nutcracker), one server', have('nutcracker') ? startNutcracker : null],
  ...ENGINE_BACKENDS.map((b) => [
    `engine-${b}`,
    `engine \`proxy --mode raw --backend ${b}\``,
    (l, u) => startEngine(l, u, b),
  ]),
]
// The last row is a diagnosis, not a peer: io_uring with a provided-buffer ring of at least one
// buffer per socket (the default ring of 128 buffers runs dry with 2 × C sockets receiving).
const DIAG_BUFFERS = 2 ** Math.ceil(Math.log2(Math.min(2 * CFG.manyConns, 32768)))
const MANY_ROWS = [
  ['direct', 'direct (many-pingpong → echo)', null],
  ['haproxy', 'HAProxy 2.6 TCP, nbthread 1', (l, u) => startHaproxy(l, u, { maxconn: CFG.manyConns + 100 })],
  ...ENGINE_BACKENDS.map((b) => [
    `engine-${b}`,
    `engine \`proxy --mode raw --backend ${b}\``,
    (l, u) => startEngine(l, u, b),
  ]),
  [
    'engine-io_uring-bufs',
    `engine \`proxy --mode raw --backend io_uring --recv-buffers ${DIAG_BUFFERS}\` (diagnosis)`,
    (l, u) => startEngine(l, u, 'io_uring', ['--recv-buffers', String(DIAG_BUFFERS)]),
  ],
]

// ---------------------------------------------------------------- redis

let redis = null
async function redisSection() {
  redis = await startRedis()
  try {
    for (let rep = 0; rep < CFG.reps; rep++) {
      for (const depth of DEPTHS) {
        await quiet(`redis rep ${rep + 1} -P ${depth}`)
        for (const [name, , start] of REDIS_ROWS) {
          const key = `redis/${depth}/${name}`
          if (name !== 'direct' && !start) {
            results[`${key}/error`] = 'n/a: not installed'
            continue
          }
          log(`redis rep ${rep + 1}: -P ${depth} ${name}`)
          await cellRun(key, async (started) => {
            let port = redis.port
            let proxy = null
            if (start) {
              port = await freePort()
              proxy = await start(port, redis.port)
              started.push(proxy)
            }
            const n = CFG.redisN[depth]
            const p0 = proxy?.cpuSecs() ?? 0
            const r0 = redis.proc.cpuSecs()
            const out = await redisBenchmark(port, n, depth)
            const p1 = proxy?.cpuSecs() ?? 0
            const r1 = redis.proc.cpuSecs()
            const reqM = (2 * n) / 1e6
            note(`${key}/set`, out.SET.rps)
            note(`${key}/get`, out.GET.rps)
            note(`${key}/setP50`, out.SET.p50_latency_ms)
            note(`${key}/redisCpu`, (r1 - r0) / reqM)
            if (proxy) note(`${key}/proxyCpu`, (p1 - p0) / reqM)
            if (name.startsWith('engine-')) {
              await proxy.stop()
              const s = engineStats(proxy)
              note(`${key}/waits`, s.waits / (2 * n))
              note(`${key}/starved`, s.starved)
              results[`${key}/kind`] = s.kind
            }
          })
        }
      }
    }
  } finally {
    await redis.proc.stop()
  }
}

function redisTables() {
  const out = []
  for (const depth of DEPTHS) {
    const direct = { set: med(`redis/${depth}/direct/set`), get: med(`redis/${depth}/direct/get`) }
    const rows = REDIS_ROWS.map(([name, label]) => {
      const k = `redis/${depth}/${name}`
      return [
        label,
        cell(`${k}/set`, 0),
        cell(`${k}/get`, 0),
        `${ratio(med(`${k}/set`), direct.set)} / ${ratio(med(`${k}/get`), direct.get)}`,
        name === 'direct' ? '—' : cell(`${k}/proxyCpu`, 2),
        cell(`${k}/redisCpu`, 2),
        name.startsWith('engine-') ? cell(`${k}/waits`, 3) : '—',
        name.startsWith('engine-') ? cell(`${k}/starved`, 0) : '—',
      ]
    })
    out.push(`\n#### Redis, \`-P ${depth}\` (-n ${CFG.redisN[depth]} per test, SET then GET)\n`)
    out.push(
      table(
        [
          'path',
          'SET req/s',
          'GET req/s',
          'SET / GET × direct',
          'proxy CPU-s per M requests',
          'redis-server CPU-s per M requests',
          'engine waits per request',
          'ring starved',
        ],
        rows,
      ),
    )
  }
  return out.join('\n')
}

// ---------------------------------------------------------------- many connections

async function manySection() {
  for (let rep = 0; rep < CFG.reps; rep++) {
    await quiet(`many rep ${rep + 1}`)
    for (const [name, , start] of MANY_ROWS) {
      const key = `many/${name}`
      log(`many rep ${rep + 1}: ${CFG.manyConns} connections ${name}`)
      await cellRun(key, async (started) => {
        const { proxy, client } = await manyOnce(start, started)
        const j = client.json('many-pingpong')
        note(`${key}/mps`, j.msgs_per_sec)
        note(`${key}/p50`, j.p50_us)
        note(`${key}/p99`, j.p99_us)
        note(`${key}/p999`, j.p999_us)
        if (proxy) note(`${key}/proxyCpu`, proxy.cpu / (j.all_msgs / 1e6))
        if (proxy?.stats) {
          note(`${key}/waits`, proxy.stats.waits / j.all_msgs)
          note(`${key}/starved`, proxy.stats.starved)
        }
      })
    }
  }
}

/** One many-pingpong run through `start` (null: direct). Returns the client and the proxy's CPU and stats. */
async function manyOnce(start, started, { perf = null } = {}) {
  const { proxy, port } = await echoBehind(
    started,
    path.join(BIN, 'many-pingpong'),
    ['--duration', String(CFG.manyWarmup + CFG.manySecs + 60)],
    start,
  )
  const counter = perf && proxy ? await perf(proxy) : null
  const c0 = proxy?.cpuSecs() ?? 0
  const client = await run(
    'many-pingpong client',
    path.join(BIN, 'many-pingpong'),
    [
      'client',
      '--connect',
      `127.0.0.1:${port}`,
      '--conns',
      String(CFG.manyConns),
      '--warmup',
      String(CFG.manyWarmup),
      '--duration',
      String(CFG.manySecs),
    ],
    {},
    (CFG.manyWarmup + CFG.manySecs + 60) * 1000,
  )
  const cpu = proxy ? proxy.cpuSecs() - c0 : 0
  const counts = counter ? await counter.finish() : null
  const j = client.json('many-pingpong')
  if (!j || client.code !== 0) {
    throw new Error(
      `many-pingpong (exit ${client.code}): ${client.stderr.trim().slice(-120)} ${client.lines.at(-1) ?? ''}`,
    )
  }
  let stats = null
  if (proxy?.name.startsWith('engine')) {
    await proxy.stop()
    stats = engineStats(proxy)
  }
  return { client, proxy: proxy ? { cpu, stats } : null, counts, msgs: j.all_msgs }
}

function manyTable() {
  const rows = MANY_ROWS.map(([name, label]) => {
    const k = `many/${name}`
    return [
      label,
      cell(`${k}/mps`, 0),
      `${cell(`${k}/p50`, 0)} / ${cell(`${k}/p99`, 0)} / ${cell(`${k}/p999`, 0)}`,
      name === 'direct' ? '—' : cell(`${k}/proxyCpu`, 2),
      name.startsWith('engine-') ? cell(`${k}/waits`, 3) : '—',
      name.startsWith('engine-') ? cell(`${k}/starved`, 0) : '—',
    ]
  })
  return [
    `\n#### ${CFG.manyConns} connections, 64-byte request → 64-byte response, closed loop (${CFG.manyWarmup} s warm-up, ${CFG.manySecs} s measured)\n`,
    table(
      [
        'path',
        'round trips/s',
        'round trip p50 / p99 / p99.9 µs',
        'proxy CPU-s per M round trips',
        'engine waits per round trip',
        'ring starved',
      ],
      rows,
    ),
  ].join('\n')
}

// ---------------------------------------------------------------- bulk (benchmark/engine/run.mjs)

let bulk = null
async function bulkSection() {
  const file = path.join(ROOT, 'benchmark/results', `backends-bulk-${process.pid}.json`)
  const args = [
    path.join(ROOT, 'benchmark/engine/run.mjs'),
    '--only',
    'raw',
    '--backends',
    ENGINE_BACKENDS.join(','),
    '--raw-rows',
    'direct,haproxy,engine',
    '--reps',
    String(CFG.reps),
    '--raw-secs',
    String(CFG.rawSecs),
    '--json',
    file,
  ]
  log(`bulk: node ${args.map((a) => path.relative(ROOT, a) || a).join(' ')}`)
  await quiet('bulk')
  const c = await run('engine/run.mjs', process.execPath, args, {}, (CFG.reps * 2 * 4 * (CFG.rawSecs + 30) + 60) * 1000)
  process.stderr.write(c.stderr)
  if (!existsSync(file)) throw new Error(`benchmark/engine/run.mjs --only raw failed (exit ${c.code})`)
  bulk = JSON.parse(readFileSync(file, 'utf8'))
  rmSync(file)
  for (const [k, v] of Object.entries(bulk.results)) results[`bulk/${k}`] = v
}

function bulkTable() {
  if (!bulk) return ''
  const md = bulk.markdown
  const i = md.indexOf('### Raw forwarding')
  return `\n${md.slice(i).replace(/^### /, '#### ').trim()}`
}

// ---------------------------------------------------------------- counts (perf stat)

const PERF_EVENTS = [
  ['raw_syscalls:sys_enter', 'syscalls'],
  ['syscalls:sys_enter_io_uring_enter', 'io_uring_enter'],
  ['syscalls:sys_enter_epoll_wait', 'epoll_wait'],
  ['syscalls:sys_enter_read', 'read'],
  ['syscalls:sys_enter_recvfrom', 'recvfrom'],
  ['syscalls:sys_enter_write', 'write'],
  ['syscalls:sys_enter_writev', 'writev'],
  ['syscalls:sys_enter_sendto', 'sendto'],
  ['io_uring:io_uring_submit_req', 'uring submit_req'],
  ['io_uring:io_uring_complete', 'uring complete (CQEs)'],
  ['io_uring:io_uring_poll_arm', 'uring poll_arm'],
  ['io_uring:io_uring_queue_async_work', 'uring queue_async_work'],
  ['io_uring:io_uring_local_work_run', 'uring local_work_run (deferred task work)'],
  ['context-switches', 'context switches'],
]
const perfOk = have('perf')

/** Attaches `perf stat` (interval mode, summed at the end) to `proxy`; resolves once it counts. */
async function perfAttach(proxy) {
  const out = configFile('perf.csv', '')
  const p = new Proc('perf stat', 'perf', [
    'stat',
    '-x,',
    '-I',
    '100',
    '-o',
    out,
    ...PERF_EVENTS.flatMap(([e]) => ['-e', e]),
    '-p',
    String(proxy.pid),
  ])
  const until = Date.now() + 10000
  while (!readFileSync(out, 'utf8').includes(PERF_EVENTS[0][0])) {
    if (Date.now() > until || p.code !== undefined)
      throw new Error(`perf stat did not start: ${p.stderr.trim().slice(-160)}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  return {
    async finish() {
      p.kill('SIGINT')
      await p.finish(5000)
      const sums = {}
      for (const line of readFileSync(out, 'utf8').split('\n')) {
        const f = line.split(',')
        if (f.length < 4) continue
        const v = Number(f[1])
        if (Number.isFinite(v)) sums[f[3]] = (sums[f[3]] ?? 0) + v
      }
      rmSync(out)
      return sums
    },
  }
}

async function countsSection() {
  if (!perfOk) {
    results['counts/error'] = 'n/a: perf not installed'
    return
  }
  const rows = [
    ['haproxy', (l, u) => startHaproxy(l, u, { maxconn: CFG.manyConns + 100 })],
    ...ENGINE_BACKENDS.map((b) => [`engine-${b}`, (l, u) => startEngine(l, u, b)]),
  ]
  redis = await startRedis()
  try {
    for (const [name, start] of rows) {
      log(`counts: redis -P 1 -n ${CFG.countsRedisN} ${name}`)
      await cellRun(`counts/redis/${name}`, async (started) => {
        const port = await freePort()
        const proxy = await start(port, redis.port)
        started.push(proxy)
        const counter = await perfAttach(proxy)
        await redisBenchmark(port, CFG.countsRedisN, 1)
        const sums = await counter.finish()
        for (const [e] of PERF_EVENTS) results[`counts/redis/${name}/${e}`] = [(sums[e] ?? 0) / (2 * CFG.countsRedisN)]
      })
    }
  } finally {
    await redis.proc.stop()
  }
  const diag = MANY_ROWS.at(-1)
  for (const [name, start] of [...rows, [diag[0], diag[2]]]) {
    log(`counts: many ${name}`)
    await cellRun(`counts/many/${name}`, async (started) => {
      const { counts, msgs } = await manyOnce(start, started, { perf: perfAttach })
      for (const [e] of PERF_EVENTS) results[`counts/many/${name}/${e}`] = [(counts[e] ?? 0) / msgs]
    })
  }
}

function countsTable() {
  const cols = [
    ['redis', 'haproxy', 'HAProxy'],
    ['redis', 'engine-epoll', 'epoll'],
    ['redis', 'engine-io_uring', 'io_uring'],
    ['many', 'haproxy', 'HAProxy'],
    ['many', 'engine-epoll', 'epoll'],
    ['many', 'engine-io_uring', 'io_uring'],
    ['many', 'engine-io_uring-bufs', `io_uring, ${DIAG_BUFFERS} buffers`],
  ]
  const rows = PERF_EVENTS.map(([e, label]) => [
    label,
    ...cols.map(([s, n]) => {
      const v = med(`counts/${s}/${n}/${e}`)
      return v === undefined ? (results[`counts/${s}/${n}/error`] ? 'error' : '—') : v.toFixed(3)
    }),
  ])
  return [
    `\n#### Kernel work per request in the proxy process (\`perf stat -p\`, separate runs: redis \`-P 1 -n ${CFG.countsRedisN}\`, ${CFG.manyConns} connections for ${CFG.manyWarmup + CFG.manySecs} s)\n`,
    table(['event per request (per round trip)', ...cols.map(([s, , l]) => `${s}: ${l}`)], rows),
  ].join('\n')
}

// ---------------------------------------------------------------- ratios and goals

function summary() {
  const lines = []
  const io = (k) => med(k.replace('@', 'engine-io_uring'))
  const ep = (k) => med(k.replace('@', 'engine-epoll'))
  lines.push('\n#### io_uring / epoll (medians)\n')
  const rows = []
  for (const d of DEPTHS) {
    for (const [m, label] of [
      ['set', 'SET req/s'],
      ['get', 'GET req/s'],
      ['proxyCpu', 'proxy CPU per M requests'],
      ['waits', 'waits per request'],
    ]) {
      rows.push([`redis -P ${d}`, label, ratio(io(`redis/${d}/@/${m}`), ep(`redis/${d}/@/${m}`), 3)])
    }
  }
  for (const [m, label] of [
    ['mps', 'round trips/s'],
    ['p50', 'p50'],
    ['p99', 'p99'],
    ['proxyCpu', 'proxy CPU per M round trips'],
    ['waits', 'waits per round trip'],
  ]) {
    rows.push([`${CFG.manyConns} connections`, label, ratio(io(`many/@/${m}`), ep(`many/@/${m}`), 3)])
  }
  rows.push([
    `${CFG.manyConns} connections, io_uring with ${DIAG_BUFFERS} buffers (diagnosis)`,
    'round trips/s; p99',
    `${ratio(med('many/engine-io_uring-bufs/mps'), ep('many/@/mps'), 3)}; ${ratio(med('many/engine-io_uring-bufs/p99'), ep('many/@/p99'), 3)}`,
  ])
  for (const s of [1, 4]) {
    rows.push([`iperf3 ${s} stream(s)`, 'Gbit/s', ratio(io(`bulk/raw/${s}/@/gbps`), ep(`bulk/raw/${s}/@/gbps`), 3)])
    rows.push([
      `iperf3 ${s} stream(s)`,
      'proxy CPU-s per GB',
      ratio(io(`bulk/raw/${s}/@/cpuPerGB`), ep(`bulk/raw/${s}/@/cpuPerGB`), 3),
    ])
  }
  lines.push(table(['workload', 'metric', 'io_uring / epoll'], rows))

  const goals = []
  const met = (ok) => (ok === undefined ? 'not measured' : ok ? 'met' : 'not met')
  const all = (xs) => (xs.some((x) => x === undefined) ? undefined : xs.every(Boolean))
  const ge = (a, b) => (a === undefined || b === undefined ? undefined : a >= b)
  const le = (a, b) => (a === undefined || b === undefined ? undefined : a <= b)
  const redisGoal = all(
    DEPTHS.flatMap((d) =>
      ['set', 'get'].flatMap((m) => [
        ge(io(`redis/${d}/@/${m}`), med(`redis/${d}/haproxy/${m}`)),
        ge(io(`redis/${d}/@/${m}`), med(`redis/${d}/twemproxy/${m}`)),
      ]),
    ),
  )
  const cpuGoal = all(
    DEPTHS.map((d) => le(io(`redis/${d}/@/proxyCpu`), (med(`redis/${d}/haproxy/proxyCpu`) ?? NaN) * 0.5)),
  )
  const waitGoal = all(
    DEPTHS.map((d) => (io(`redis/${d}/@/waits`) === undefined ? undefined : io(`redis/${d}/@/waits`) < 1)),
  )
  const manyGoal = ge(io('many/@/mps'), (ep('many/@/mps') ?? NaN) * 1.5)
  const bulkGoal = all([1, 4].map((s) => ge(io(`bulk/raw/${s}/@/gbps`), ep(`bulk/raw/${s}/@/gbps`))))
  const p99Goal = le(io('many/@/p99'), ep('many/@/p99'))
  goals.push(`- io_uring redis req/s ≥ HAProxy and ≥ twemproxy at -P 1 and -P 16, SET and GET: ${met(redisGoal)}`)
  goals.push(`- io_uring proxy CPU per M requests ≤ 0.5 × HAProxy's at both depths: ${met(cpuGoal)}`)
  goals.push(`- fewer than one io_uring_enter per request at both depths: ${met(waitGoal)}`)
  goals.push(`- io_uring ≥ 1.5 × epoll round trips/s with ${CFG.manyConns} connections: ${met(manyGoal)}`)
  goals.push(`- io_uring never slower than epoll on bulk (1 and 4 streams, medians): ${met(bulkGoal)}`)
  goals.push(`- io_uring p99 no worse than epoll's with ${CFG.manyConns} connections: ${met(p99Goal)}`)
  lines.push('\n#### Goals (computed from the medians above)\n')
  lines.push(goals.join('\n'))
  return lines.join('\n')
}

// ---------------------------------------------------------------- main

function machine() {
  return [
    cpuLine(),
    `${firstLine("haproxy -v | grep -o 'HAProxy version [^ ]*'")}; ${firstLine('nutcracker -V')}; ${firstLine('redis-server --version | cut -d" " -f1-3')}; ${firstLine('iperf3 --version')}`,
  ].join('\n')
}

const t0 = Date.now()
const header = machine()
const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
log(`engine proxy: ${engineMissing ?? PROXY_BIN}`)
if (only.has('redis')) await redisSection()
if (only.has('many')) await manySection()
if (only.has('bulk')) await bulkSection()
if (only.has('counts')) await countsSection()

const out = []
out.push(...headerLines(header, CFG.reps, Q, t0))
out.push(
  `Cells: median of ${CFG.reps} interleaved repetitions (min–max). Load average at start: ${load0}` +
    (busyLog.length
      ? `; CPUs busy before each round (others' load): ${busyLog.map((b) => b.toFixed(0)).join(', ')} %.`
      : '.'),
)
if (only.has('redis')) out.push(redisTables())
if (only.has('many')) out.push(manyTable())
if (only.has('bulk')) out.push(bulkTable())
if (only.has('counts')) out.push(countsTable())
out.push(summary())
const text = out.join('\n')
console.log(text)

const jsonFile = saveResults(ROOT, opt.json, 'backends', { config: CFG, machine: header, results, markdown: text })
log(`raw results: ${path.relative(ROOT, jsonFile)}`)
process.exit(0)
