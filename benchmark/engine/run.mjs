// Engine benchmarks, every row side by side in one run, interleaved, repeated; medians with
// ranges printed as markdown tables. Start it through run.sh, which installs the peers and
// builds the native tools first:
//
//   benchmark/engine/run.sh [--quick] [--reps N] [--only raw,framed,latency,memory]
//                           [--framed-conns C] [--idle-conns N] [--proxy PATH] [--json FILE]
//                           [--backends LIST] [--raw-rows LIST] [--raw-secs S] [--framed-over tcp,unix]
//
// --backends epoll,io_uring replaces the raw section's engine row by one row per backend
// (`proxy --backend B`); --raw-rows keeps only some raw rows (of direct,haproxy,pipe,engine);
// --raw-secs sets the iperf3 duration. benchmark/backends/run.mjs uses them. --lat-rows keeps only
// some latency rows (of direct,haproxy,pipe,engine,apiNative,apiTs,apiTs0,apiInlineNative,apiInline;
// the api* rows run benchmark/baselines/sockmap-proxy.mjs over the built package). --framed-over tcp,unix runs
// every framed row over TCP loopback and over Unix stream sockets (client → proxy → sink), side by side.
//
// Scenarios (see BENCHMARKS.md "## Engine"):
//   raw      iperf3 1 and 4 streams: direct, HAProxy (TCP mode, nbthread 1), Node pipe proxy,
//            engine proxy --mode raw. Gbit/s, proxy CPU-s per GB.
//   framed   64-byte length-prefixed frames, native client -> sink: direct (the ceiling),
//            engine --mode frames, the TS API with a native rule, Node coalescing router, Node naive
//            router. frames/s, proxy CPU-s per million frames; over TCP loopback and/or Unix sockets.
//   latency  64-byte request/response (native pingpong; sockperf as a cross-check of direct):
//            direct, HAProxy, Node pipe, engine raw; pinned to CPU 0 and unpinned.
//   memory   RSS per idle proxied connection (N connections held), peak RSS during a flood
//            into a consumer reading 1 MB/s.
import { existsSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import {
  Proc,
  run,
  freePort,
  sleep,
  waitListen,
  headerLines,
  firstLine,
  cpuLine,
  saveResults,
  unixPath,
  median,
} from './procs.mjs'
import { isReason, recorder, table } from './tables.mjs'
import { have, startHaproxy } from './peers.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
// The native tools: cargo's target directory (CARGO_TARGET_DIR, as run.sh builds them), else ./target.
const BIN = path.join(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target'), 'release')
const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string' },
    only: { type: 'string', default: 'raw,framed,latency,memory' },
    'framed-conns': { type: 'string', default: '1' },
    'idle-conns': { type: 'string' },
    proxy: { type: 'string' },
    json: { type: 'string' },
    backends: { type: 'string' },
    'raw-rows': { type: 'string', default: 'direct,haproxy,pipe,engine' },
    'lat-rows': { type: 'string', default: '' },
    'raw-secs': { type: 'string' },
    'framed-over': { type: 'string', default: 'tcp' },
  },
})
const Q = opt.quick
const CFG = {
  reps: Number(opt.reps ?? (Q ? 2 : 3)),
  rawSecs: Number(opt['raw-secs'] ?? (Q ? 2 : 10)),
  framedSecs: Q ? 1 : 5,
  framedConns: Number(opt['framed-conns']),
  pingIters: Q ? 5000 : 100000,
  pingWarmup: Q ? 500 : 2000,
  idleConns: idleConnCount(Number(opt['idle-conns'] ?? (Q ? 1000 : 10000))),
  floodSecs: Q ? 3 : 10,
  floodBytes: 1e9,
  slowRate: 1e6,
}
if (!(CFG.reps >= 1 && CFG.reps <= 20)) throw new RangeError('--reps must be 1..20')
if (!(CFG.rawSecs >= 1 && CFG.rawSecs <= 120)) throw new RangeError('--raw-secs must be 1..120')
const BACKENDS = opt.backends ? opt.backends.split(',') : null
for (const b of BACKENDS ?? []) {
  if (!['auto', 'epoll', 'io_uring'].includes(b)) throw new RangeError(`--backends: unknown backend ${b}`)
}
const only = new Set(opt.only.split(','))
const FRAMED_OVER = opt['framed-over'].split(',')
for (const t of FRAMED_OVER) {
  if (t !== 'tcp' && t !== 'unix') throw new RangeError(`--framed-over: unknown transport ${t} (tcp,unix)`)
}

/** Connections held in the memory test: the wanted count, capped so the proxy's two
 * descriptors per connection fit under the hard open-file limit. */
function idleConnCount(wanted) {
  let hard = 1024
  try {
    hard = Number(execFileSync('bash', ['-c', 'ulimit -Hn']).toString().trim()) || hard
  } catch {
    /* default */
  }
  if (!Number.isFinite(hard)) return wanted
  return Math.min(wanted, Math.floor((hard - 100) / 2 / 100) * 100)
}

// ---------------------------------------------------------------- proxies under test

const ENGINE_SRC = path.join(ROOT, 'crates/sockmap-core/examples/proxy.rs')
// The engine's proxy: the example built from this checkout, or a binary given with --proxy.
const PROXY_BIN = opt.proxy ?? path.join(BIN, 'examples/proxy')
const engineMissing = opt.proxy
  ? existsSync(opt.proxy)
    ? null
    : `n/a: ${opt.proxy} not found`
  : !existsSync(ENGINE_SRC)
    ? 'n/a: proxy example missing'
    : !existsSync(PROXY_BIN)
      ? 'n/a: proxy example failed to build'
      : null
const PROXIES = {
  haproxy: {
    label: 'HAProxy 2.6 TCP',
    missing: have('haproxy') ? null : 'n/a: haproxy not installed',
    start: startHaproxy,
  },
  pipe: node('Node `net` pipe proxy', 'pipe-proxy.mjs', []),
  coalesce: node('Node router, coalescing writes', 'framed-router.mjs', ['--mode', 'coalesce']),
  naive: node('Node router, a write per frame', 'framed-router.mjs', ['--mode', 'naive']),
  engineRaw: engine('engine `proxy --mode raw`', 'raw'),
  apiNative: api('TS API, native rule (threads)', ['--mode', 'native']),
  apiTs: api('TS API, TypeScript verdict (threads)', ['--mode', 'ts']),
  apiTs0: api('TS API, TypeScript verdict (threads, `maxDelayMicros: 0`)', ['--mode', 'ts', '--max-delay', '0']),
  apiInlineNative: api('TS API, native rule (inline)', ['--mode', 'native', '--drive', 'inline']),
  apiInline: api('TS API, TypeScript verdict (inline)', ['--mode', 'ts', '--drive', 'inline']),
  apiFrames: api('TS API, `parsers.lengthField` + native rule', ['--mode', 'native', '--parser', 'length']),
  engineFrames: engine('engine `proxy --mode frames`', 'frames'),
}
for (const b of BACKENDS ?? [])
  PROXIES[`engineRaw-${b}`] = engine(`engine \`proxy --mode raw --backend ${b}\``, 'raw', b)

/** A 1:1 proxy through the built package's TypeScript API (benchmark/baselines/sockmap-proxy.mjs). */
function api(label, extra) {
  const p = node(label, 'sockmap-proxy.mjs', extra)
  p.missing = existsSync(path.join(ROOT, 'dist/index.mjs')) ? null : 'n/a: the package is not built (npm run build)'
  return p
}

/** A proxy's address argument: a loopback port, or an address string (`unix:PATH`) as it is. */
const at = (a) => (typeof a === 'number' ? `127.0.0.1:${a}` : a)

function node(label, script, extra) {
  return {
    label,
    missing: null,
    async start(listen, upstream, { pin }) {
      const p = new Proc(
        label,
        process.execPath,
        [path.join(ROOT, 'benchmark/baselines', script), '--listen', at(listen), '--upstream', at(upstream), ...extra],
        { pin },
      )
      await p.ready().catch(async (e) => {
        await p.stop()
        throw e
      })
      return p
    },
  }
}

function engine(label, mode, backend) {
  return {
    label,
    missing: engineMissing,
    async start(listen, upstream, { pin }) {
      const p = new Proc(
        label,
        PROXY_BIN,
        [
          '--listen',
          at(listen),
          '--upstream',
          at(upstream),
          '--mode',
          mode,
          ...(backend ? ['--backend', backend] : []),
        ],
        { pin },
      )
      await p.ready().catch(async (e) => {
        await p.stop()
        throw e
      })
      return p
    },
  }
}

const bin = (name) => path.join(BIN, name)

// ---------------------------------------------------------------- results and formatting

const { results, note, cell, row: recordRow } = recorder() // "scenario/row/metric" -> samples or error
/** {@link recorder}'s row, missing when its proxy is. */
const row = (key, proxyKey, body) => recordRow(key, proxyKey ? PROXIES[proxyKey].missing : null, body)

const cpuOf = (proxy) => (proxy ? proxy.cpuSecs() : 0)

// ---------------------------------------------------------------- (a) raw forwarding

const rawWanted = new Set(opt['raw-rows'].split(','))
const RAW_ROWS = [
  ['direct', null],
  ['haproxy', 'haproxy'],
  ['pipe', 'pipe'],
  ...(BACKENDS ? BACKENDS.map((b) => [`engine-${b}`, `engineRaw-${b}`]) : [['engine', 'engineRaw']]),
].filter(([name]) => rawWanted.has(name.replace(/-.*/, '')))

async function rawScenario() {
  for (let rep = 0; rep < CFG.reps; rep++) {
    for (const streams of [1, 4]) {
      for (const [name, proxyKey] of RAW_ROWS) {
        const key = `raw/${streams}/${name}`
        log(`raw rep ${rep + 1}: ${streams} stream(s) ${name}`)
        await row(key, proxyKey, async (started) => {
          const iperfPort = await freePort()
          const server = new Proc('iperf3 -s', 'iperf3', ['-s', '-1', '-B', '127.0.0.1', '-p', String(iperfPort)])
          started.push(server)
          await waitListen(iperfPort)
          let port = iperfPort
          let proxy = null
          if (proxyKey) {
            port = await freePort()
            proxy = await PROXIES[proxyKey].start(port, iperfPort, {})
            started.push(proxy)
          }
          const cpu0 = cpuOf(proxy)
          const c = await run(
            'iperf3 -c',
            'iperf3',
            [
              '-c',
              '127.0.0.1',
              '-p',
              String(port),
              '-t',
              String(CFG.rawSecs),
              '-P',
              String(streams),
              '-J',
              '--connect-timeout',
              '3000',
            ],
            {},
            (CFG.rawSecs + 30) * 1000,
          )
          const cpu1 = cpuOf(proxy)
          let j = {}
          try {
            j = JSON.parse(c.lines.join('\n'))
          } catch {
            /* reported below */
          }
          if (j.error || !j.end?.sum_received) {
            throw new Error(
              `iperf3 (exit ${c.code ?? c.signal}): ${j.error ?? (c.stderr.trim() || c.lines.join(' ').slice(0, 120))}`,
            )
          }
          const bytes = j.end.sum_received.bytes
          note(`${key}/gbps`, j.end.sum_received.bits_per_second / 1e9)
          if (proxy) note(`${key}/cpuPerGB`, (cpu1 - cpu0) / (bytes / 1e9))
        })
      }
    }
  }
}

function rawTable() {
  const rows = RAW_ROWS.map(([name, proxyKey]) => [
    proxyKey ? PROXIES[proxyKey].label : 'direct (iperf3 client → server)',
    ...[1, 4].flatMap((s) => [cell(`raw/${s}/${name}/gbps`, 2), proxyKey ? cell(`raw/${s}/${name}/cpuPerGB`, 3) : '—']),
  ])
  return table(
    ['path', '1 stream Gbit/s', '1 stream proxy CPU-s/GB', '4 streams Gbit/s', '4 streams proxy CPU-s/GB'],
    rows,
  )
}

// ---------------------------------------------------------------- (b) framed routing

const FRAMED_ROWS = [
  ['direct', null],
  ['engine', 'engineFrames'],
  ['api', 'apiFrames'],
  ['coalesce', 'coalesce'],
  ['naive', 'naive'],
]
const OVER_LABEL = { tcp: 'TCP loopback', unix: 'Unix socket' }

/** The results key of a framed row: `framed/ROW` over TCP (as before Unix rows existed, so that runs of older
 * checkouts pair with it), `framed-unix/ROW` over Unix sockets. */
const framedKey = (over, name) => (over === 'tcp' ? `framed/${name}` : `framed-unix/${name}`)

/** A fresh address for a framed listener: a free loopback port, or a Unix socket path. */
const framedAddr = async (over, name) => (over === 'unix' ? `unix:${unixPath(name)}` : freePort())

async function framedScenario() {
  const C = String(CFG.framedConns)
  for (let rep = 0; rep < CFG.reps; rep++) {
    for (const [name, proxyKey] of FRAMED_ROWS) {
      for (const over of FRAMED_OVER) {
        await framedRow(rep, name, proxyKey, over, C)
      }
    }
  }
}

async function framedRow(rep, name, proxyKey, over, C) {
  const key = framedKey(over, name)
  log(`framed rep ${rep + 1}: ${name} over ${over}`)
  await row(key, proxyKey, async (started) => {
    const sinkAt = await framedAddr(over, 'sink')
    const sink = new Proc('framed-sink', bin('framed-sink'), [
      '--listen',
      at(sinkAt),
      '--conns',
      C,
      '--duration',
      String(CFG.framedSecs + 20),
    ])
    started.push(sink)
    await sink.ready()
    let target = sinkAt
    let proxy = null
    if (proxyKey) {
      target = await framedAddr(over, 'proxy')
      proxy = await PROXIES[proxyKey].start(target, sinkAt, {})
      started.push(proxy)
    }
    const cpu0 = cpuOf(proxy)
    const client = await run(
      'framed-client',
      bin('framed-client'),
      ['--connect', at(target), '--conns', C, '--frame-size', '64', '--duration', String(CFG.framedSecs)],
      {},
      (CFG.framedSecs + 20) * 1000,
    )
    await sink.finish(20000)
    const cpu1 = cpuOf(proxy)
    const s = sink.json('framed-sink')
    const c = client.json('framed-client')
    if (!s || !c) throw new Error(`no report: ${client.stderr} ${sink.stderr}`)
    note(`${key}/fps`, s.frames_per_sec)
    note(`${key}/errors`, s.seq_errors + s.len_errors + s.resets + c.errors)
    note(`${key}/lost`, c.frames - s.frames)
    if (proxy) note(`${key}/cpuPerM`, (cpu1 - cpu0) / (s.frames / 1e6))
  })
}

function framedTable() {
  const both = FRAMED_OVER.length > 1
  const rows = FRAMED_ROWS.flatMap(([name, proxyKey]) =>
    FRAMED_OVER.map((over) => [
      (proxyKey ? PROXIES[proxyKey].label : 'direct: framed-client → framed-sink (ceiling)') +
        (both ? `, ${OVER_LABEL[over]}` : ''),
      cell(`${framedKey(over, name)}/fps`, 0),
      proxyKey ? cell(`${framedKey(over, name)}/cpuPerM`, 3) : '—',
      cell(`${framedKey(over, name)}/errors`, 0),
      cell(`${framedKey(over, name)}/lost`, 0),
    ]),
  )
  const out = table(['path', 'frames/s', 'proxy CPU-s per M frames', 'seq/len errors', 'frames sent − received'], rows)
  if (!both) return out
  // Unix against TCP, per path, from the medians of the same run.
  const ratio = (name, metric) => {
    const u = results[`${framedKey('unix', name)}/${metric}`]
    const t = results[`${framedKey('tcp', name)}/${metric}`]
    return u?.length && t?.length ? (median(u) / median(t)).toFixed(3) : '—'
  }
  const ratios = FRAMED_ROWS.map(([name, proxyKey]) => [
    proxyKey ? PROXIES[proxyKey].label : 'direct (ceiling)',
    ratio(name, 'fps'),
    proxyKey ? ratio(name, 'cpuPerM') : '—',
  ])
  return `${out}\n\nUnix socket / TCP loopback (medians):\n\n${table(['path', 'frames/s', 'proxy CPU per M frames'], ratios)}`
}

// ---------------------------------------------------------------- (c) latency

const latWanted = opt['lat-rows'] ? new Set(opt['lat-rows'].split(',')) : null
const LAT_ROWS = [
  ['direct', null],
  ['haproxy', 'haproxy'],
  ['pipe', 'pipe'],
  ['engine', 'engineRaw'],
  ['apiNative', 'apiNative'],
  ['apiTs', 'apiTs'],
  ['apiTs0', 'apiTs0'],
  ['apiInlineNative', 'apiInlineNative'],
  ['apiInline', 'apiInline'],
].filter(([name]) => !latWanted || latWanted.has(name))
const PCTS = [
  ['p50_us', 'p50'],
  ['p99_us', 'p99'],
  ['p999_us', 'p99.9'],
]

async function latencyScenario() {
  for (let rep = 0; rep < CFG.reps; rep++) {
    for (const pin of [true, false]) {
      const mode = pin ? 'pinned' : 'unpinned'
      for (const [name, proxyKey] of LAT_ROWS) {
        const key = `lat/${mode}/${name}`
        log(`latency rep ${rep + 1}: ${mode} ${name}`)
        await row(key, proxyKey, async (started) => {
          const echoPort = await freePort()
          const echo = new Proc(
            'pingpong echo',
            bin('pingpong'),
            ['echo', '--listen', `127.0.0.1:${echoPort}`, '--duration', '120'],
            { pin },
          )
          started.push(echo)
          await echo.ready()
          let port = echoPort
          if (proxyKey) {
            port = await freePort()
            started.push(await PROXIES[proxyKey].start(port, echoPort, { pin }))
          }
          const c = await run(
            'pingpong client',
            bin('pingpong'),
            [
              'client',
              '--connect',
              `127.0.0.1:${port}`,
              '--iters',
              String(CFG.pingIters),
              '--warmup',
              String(CFG.pingWarmup),
              '--duration',
              '60',
            ],
            { pin },
            90000,
          )
          const j = c.json('pingpong')
          if (!j || c.code !== 0) throw new Error(`pingpong failed: ${c.stderr.trim()} ${c.lines.at(-1) ?? ''}`)
          for (const [f] of PCTS) note(`${key}/${f}`, j[f])
        })
      }
      if (have('sockperf')) {
        const key = `lat/${mode}/sockperf`
        log(`latency rep ${rep + 1}: ${mode} sockperf direct`)
        await row(key, null, async (started) => {
          const port = await freePort()
          const server = new Proc('sockperf sr', 'sockperf', ['sr', '--tcp', '-i', '127.0.0.1', '-p', String(port)], {
            pin,
          })
          started.push(server)
          await waitListen(port)
          const secs = Math.max(2, Math.round(CFG.pingIters / 20000))
          const c = await run(
            'sockperf pp',
            'sockperf',
            ['pp', '--tcp', '-i', '127.0.0.1', '-p', String(port), '-m', '64', '-t', String(secs)],
            { pin },
            (secs + 30) * 1000,
          )
          const text = c.lines.join('\n') + c.stderr
          const pct = (p) => Number((new RegExp(`percentile ${p} =\\s+([0-9.]+)`).exec(text) ?? [])[1])
          const vals = { p50_us: pct('50.000'), p99_us: pct('99.000'), p999_us: pct('99.900') }
          if (!Number.isFinite(vals.p50_us)) throw new Error(`sockperf output not understood: ${text.slice(-200)}`)
          for (const [f] of PCTS) note(`${key}/${f}`, vals[f])
        })
      }
    }
  }
}

function latencyTable(mode) {
  const label = (name, proxyKey) =>
    proxyKey ? PROXIES[proxyKey].label : name === 'sockperf' ? 'direct, sockperf (cross-check)' : 'direct, pingpong'
  const rows = [...LAT_ROWS, ['sockperf', null]]
    .filter(
      ([name]) =>
        name !== 'sockperf' || results[`lat/${mode}/sockperf/p50_us`] || results[`lat/${mode}/sockperf/error`],
    )
    .map(([name, proxyKey]) => {
      const abs = PCTS.map(([f]) => cell(`lat/${mode}/${name}/${f}`, 2))
      if (isReason(abs[0])) return [label(name, proxyKey), abs[0], abs[0]]
      const added = PCTS.map(([f]) => {
        const xs = results[`lat/${mode}/${name}/${f}`]
        const base = results[`lat/${mode}/direct/${f}`]
        if (!proxyKey || !xs || !base) return '—'
        return `${median(xs) - median(base) >= 0 ? '+' : ''}${(median(xs) - median(base)).toFixed(2)}`
      })
      return [label(name, proxyKey), abs.join(' / '), added.join(' / ')]
    })
  return table(['path', `${mode}: p50 / p99 / p99.9 µs`, 'added vs direct (medians)'], rows)
}

// ---------------------------------------------------------------- (d) memory

const IDLE_ROWS = [
  ['haproxy', 'haproxy'],
  ['pipe', 'pipe'],
  ['engine', 'engineRaw'],
]
const FLOOD_ROWS = [
  ['haproxy', 'haproxy'],
  ['pipe', 'pipe'],
  ['coalesce', 'coalesce'],
  ['engineRaw', 'engineRaw'],
  ['engineFrames', 'engineFrames'],
]

async function memoryScenario() {
  const N = CFG.idleConns
  for (let rep = 0; rep < CFG.reps; rep++) {
    for (const [name, proxyKey] of IDLE_ROWS) {
      const key = `idle/${name}`
      log(`idle rep ${rep + 1}: ${N} connections via ${name}`)
      await row(key, proxyKey, async (started) => {
        const backPort = await freePort()
        const back = new Proc('idle-conns serve', bin('idle-conns'), [
          'serve',
          '--listen',
          `127.0.0.1:${backPort}`,
          '--expect',
          String(N),
          '--duration',
          '120',
        ])
        started.push(back)
        await back.ready()
        const port = await freePort()
        const proxy = await PROXIES[proxyKey].start(port, backPort, { maxconn: N + 50 })
        started.push(proxy)
        await sleep(300)
        const before = proxy.mem().rss
        const opening = Date.now()
        const client = new Proc('idle-conns connect', bin('idle-conns'), [
          'connect',
          '--connect',
          `127.0.0.1:${port}`,
          '--conns',
          String(N),
          '--hold',
          '120',
        ])
        started.push(client)
        const opened = JSON.parse(await client.waitLine((l) => l.startsWith('{'), 60000))
        if (opened.connected !== N) throw new Error(`only ${opened.connected}/${N} connected: ${opened.last_error}`)
        await back.waitLine((l) => l.includes('"accepted"'), 60000)
        note(`${key}/openSecs`, (Date.now() - opening) / 1000)
        await sleep(500)
        const after = proxy.mem().rss
        note(`${key}/perConn`, (after - before) / N)
        note(`${key}/perSock`, (after - before) / N / 2)
        note(`${key}/rss`, after / 2 ** 20)
      })
    }
    for (const [name, proxyKey] of FLOOD_ROWS) {
      const key = `flood/${name}`
      log(`flood rep ${rep + 1}: ${name}`)
      await row(key, proxyKey, async (started) => {
        const sinkPort = await freePort()
        const sink = new Proc('slow-sink', bin('slow-sink'), [
          '--listen',
          `127.0.0.1:${sinkPort}`,
          '--rate',
          String(CFG.slowRate),
          '--duration',
          String(CFG.floodSecs + 1),
        ])
        started.push(sink)
        await sink.ready()
        const port = await freePort()
        const proxy = await PROXIES[proxyKey].start(port, sinkPort, {})
        started.push(proxy)
        await sleep(200)
        const start = proxy.mem().rss
        const client = new Proc('framed-client', bin('framed-client'), [
          '--connect',
          `127.0.0.1:${port}`,
          '--frame-size',
          '64',
          '--count',
          String(Math.floor(CFG.floodBytes / 64)),
          '--duration',
          String(CFG.floodSecs),
        ])
        started.push(client)
        let peak = start
        const until = Date.now() + (CFG.floodSecs + 1) * 1000
        while (Date.now() < until && client.code === undefined) {
          peak = Math.max(peak, proxy.mem().rss)
          await sleep(100)
        }
        peak = Math.max(peak, proxy.mem().rss, proxy.mem().hwm)
        await client.finish(10000)
        await sink.finish(10000)
        const c = client.json('framed-client')
        const s = sink.json('slow-sink')
        note(`${key}/start`, start / 2 ** 20)
        note(`${key}/peak`, peak / 2 ** 20)
        note(`${key}/growth`, (peak - start) / 2 ** 20)
        if (c) note(`${key}/sentMB`, c.bytes / 1e6)
        if (s) note(`${key}/readMB`, s.bytes / 1e6)
      })
    }
  }
}

function memoryTables() {
  const idle = table(
    [
      'proxy',
      `RSS after ${CFG.idleConns} idle connections, MiB`,
      'RSS per proxied connection (client + upstream socket), bytes',
      'per socket, bytes',
      'seconds until all were proxied',
    ],
    IDLE_ROWS.map(([name, k]) => [
      PROXIES[k].label,
      cell(`idle/${name}/rss`, 1),
      cell(`idle/${name}/perConn`, 0, { plain: true }),
      cell(`idle/${name}/perSock`, 0, { plain: true }),
      cell(`idle/${name}/openSecs`, 2),
    ]),
  )
  const flood = table(
    ['proxy', 'RSS at start, MiB', 'peak RSS, MiB', 'growth, MiB', 'client sent, MB', 'sink read, MB'],
    FLOOD_ROWS.map(([name, k]) => [
      PROXIES[k].label,
      cell(`flood/${name}/start`, 1),
      cell(`flood/${name}/peak`, 1),
      cell(`flood/${name}/growth`, 1),
      cell(`flood/${name}/sentMB`, 1),
      cell(`flood/${name}/readMB`, 1),
    ]),
  )
  return { idle, flood }
}

// ---------------------------------------------------------------- main

function log(msg) {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

function machine() {
  return [
    cpuLine(),
    `Node ${process.version}; ${firstLine("haproxy -v | grep -o 'HAProxy version [^ ]*'")}; ${firstLine('iperf3 --version')}; sockperf ${firstLine("sockperf --version 2>&1 | grep -o 'version [^ ]*'")}`,
  ].join('\n')
}

const t0 = Date.now()
const header = machine()
log(`engine proxy: ${engineMissing ?? PROXY_BIN}`)
if (only.has('raw')) await rawScenario()
if (only.has('framed')) await framedScenario()
if (only.has('latency')) await latencyScenario()
if (only.has('memory')) await memoryScenario()

const out = []
out.push(...headerLines(header, CFG.reps, Q, t0))
out.push(`Cells: median of ${CFG.reps} interleaved repetitions (min–max).`)
if (only.has('raw')) {
  out.push(`\n### Raw forwarding (iperf3, ${CFG.rawSecs} s per cell)\n`)
  out.push(rawTable())
}
if (only.has('framed')) {
  out.push(`\n### Framed routing (64-byte frames, ${CFG.framedConns} connection(s), ${CFG.framedSecs} s per cell)\n`)
  out.push(framedTable())
}
if (only.has('latency')) {
  out.push(`\n### Latency of a 64-byte request/response (half round trip, ${CFG.pingIters} iterations per cell)\n`)
  out.push(latencyTable('pinned'))
  out.push('')
  out.push(latencyTable('unpinned'))
}
if (only.has('memory')) {
  const { idle, flood } = memoryTables()
  out.push(`\n### Memory: idle connections (${CFG.idleConns} held through the proxy)\n`)
  out.push(idle)
  out.push(
    `\n### Memory: flood into a consumer reading ${CFG.slowRate / 1e6} MB/s (${CFG.floodSecs} s, up to ${CFG.floodBytes / 1e9} GB offered)\n`,
  )
  out.push(flood)
}
const text = out.join('\n')
console.log(text)

const jsonFile = saveResults(ROOT, opt.json, 'engine', { config: CFG, machine: header, results, markdown: text })
log(`raw results: ${path.relative(ROOT, jsonFile)}`)
process.exit(0)
