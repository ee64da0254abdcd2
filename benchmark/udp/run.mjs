// A UDP echo through a gateway, side by side in one run: the native load client `udp-load client` (several sockets,
// each its own client address, each a window of datagrams in flight, every echo checked byte for byte) sends 64-byte
// and 1,200-byte datagrams through a UDP proxy to `udp-load echo`; the same client and echo for every row, each proxy
// alone in its own process on free loopback ports. Rows, run in a fixed order in every repetition:
//   direct   client → echo (the ceiling of the client and echo)
//   node     a `node:dgram` proxy, one upstream socket per client (benchmark/udp/node-proxy.mjs)
//   socat    `socat UDP-LISTEN:P,bind=127.0.0.1,fork,reuseaddr UDP:127.0.0.1:E` (a process per client)
//   nginx    nginx's stream UDP proxy, one worker, `proxy_responses 1` (benchmark/engine/peers.mjs)
//   sockmap  sessions of `engine.bindUdp`, each paired with an `engine.connectUdp` upstream, a native redirect
//            (benchmark/udp/sockmap-proxy.mjs; the row says n/a when the build has no `bindUdp`);
//            `sockmap-epoll` and `sockmap-io_uring` (named in UDP_ROWS) run it on one backend each
// Measured per cell: echoes/s over the measured span, round-trip p50/p99 (µs), the proxy's CPU (utime + stime of
// its process and everything it forked, from /proc) per million datagrams forwarded (two per echo: one each way),
// the client's own CPU share, datagrams lost (sent − echoed after a drain), and the machine's UDP receive-buffer drops
// during the cell (/proc/net/snmp RcvbufErrors: where most losses happen).
//
//   bash benchmark/udp/run.sh     (builds the load generator, installs the peers when missing)
//   node benchmark/udp/run.mjs    (UDP_SECONDS=5 UDP_WARMUP=1 UDP_REPS=3 UDP_CLIENTS=8 UDP_WINDOW=16
//                                  UDP_SIZES=64,1200 UDP_ROWS=direct,node,socat,nginx,sockmap UDP_JSON=FILE)
//
// Prints markdown tables on stdout (progress on stderr), keeps the samples in benchmark/results/, and stops every
// process it starts.
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { have, nginxMissing, startNginxUdp } from '../engine/peers.mjs'
import { Proc, cpuLine, echoBehind, firstLine, headerLines, run, saveResults, waitListen } from '../engine/procs.mjs'
import { isReason, recorder, table } from '../engine/tables.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const BIN = path.join(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target'), 'release')
const LOAD = path.join(BIN, 'udp-load')

/** A positive integer from the environment, or `fallback`; a bad value is a RangeError naming the variable. */
function envInt(name, fallback, max) {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const v = Number(raw)
  if (!Number.isInteger(v) || v < 1 || v > max) throw new RangeError(`${name} must be an integer 1..${max}, got ${raw}`)
  return v
}

const CFG = {
  secs: envInt('UDP_SECONDS', 5, 120),
  warmup: envInt('UDP_WARMUP', 1, 60),
  reps: envInt('UDP_REPS', 3, 20),
  clients: envInt('UDP_CLIENTS', 8, 4096),
  window: envInt('UDP_WINDOW', 16, 1024),
  sizes: (process.env.UDP_SIZES || '64,1200').split(',').map(Number),
  rows: (process.env.UDP_ROWS || 'direct,node,socat,nginx,sockmap').split(','),
}
for (const s of CFG.sizes) {
  if (!Number.isInteger(s) || s < 16 || s > 65507) throw new RangeError(`UDP_SIZES: ${s} is not a size 16..65507`)
}

// ---------------------------------------------------------------- proxies under test

/** Why the built package cannot run the sockmap row, or null. */
function sockmapMissing() {
  const dist = path.join(ROOT, 'dist/engine.js')
  if (!existsSync(dist)) return 'n/a: the package is not built (npm run build)'
  if (!readFileSync(dist, 'utf8').includes('bindUdp')) return 'n/a: this build of sockmap has no engine.bindUdp'
  return null
}

/** A Node proxy script with the baselines' CLI (and `extra` arguments), awaited until it prints `ready`. */
function nodeScript(script, extra = []) {
  return async (listen, upstream) => {
    const p = new Proc(script, process.execPath, [
      path.join(ROOT, 'benchmark/udp', script),
      '--listen',
      `127.0.0.1:${listen}`,
      '--upstream',
      `127.0.0.1:${upstream}`,
      ...extra,
    ])
    await p.ready().catch(async (e) => {
      await p.stop()
      throw e
    })
    return p
  }
}

async function startSocat(listen, upstream) {
  // -T: a child ends after 30 s without traffic. Each client address gets its own forked child.
  const p = new Proc('socat', 'socat', [
    '-T',
    '30',
    `UDP-LISTEN:${listen},bind=127.0.0.1,fork,reuseaddr`,
    `UDP:127.0.0.1:${upstream}`,
  ])
  await waitListen(listen, 10000, { udp: true }).catch(async (e) => {
    await p.stopTree()
    throw new Error(`${e.message} ${p.stderr}`)
  })
  return p
}

const PROXIES = {
  direct: { label: 'direct: udp-load client → echo (ceiling)', missing: null, start: null },
  node: { label: 'Node `dgram` proxy, a socket per client', missing: null, start: nodeScript('node-proxy.mjs') },
  socat: {
    label: 'socat `UDP-LISTEN,fork`',
    missing: have('socat') ? null : 'n/a: socat not installed',
    start: startSocat,
  },
  nginx: { label: 'nginx stream UDP proxy, 1 worker', missing: nginxMissing(), start: startNginxUdp },
  sockmap: {
    label: 'sockmap: `bindUdp` sessions + `connectUdp`, native redirect',
    missing: sockmapMissing(),
    start: nodeScript('sockmap-proxy.mjs'),
  },
}
// sockmap on one backend: rows `sockmap-epoll` and `sockmap-io_uring` (not run unless UDP_ROWS names them).
for (const backend of ['epoll', 'io_uring']) {
  PROXIES[`sockmap-${backend}`] = {
    ...PROXIES.sockmap,
    label: `${PROXIES.sockmap.label}, ${backend}`,
    start: nodeScript('sockmap-proxy.mjs', ['--backend', backend]),
  }
}
const isSockmap = (row) => row.startsWith('sockmap')
for (const r of CFG.rows) if (!PROXIES[r]) throw new RangeError(`UDP_ROWS: unknown row ${r} (${Object.keys(PROXIES)})`)
const loadMissing = existsSync(LOAD) ? null : `n/a: ${LOAD} not built (cargo build --release -p sockmap-bench)`

// ---------------------------------------------------------------- the run

const rec = recorder()
const { results, note, med, cell } = rec

function log(msg) {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

/** The machine's UDP counters (`/proc/net/snmp`'s `Udp:` lines) by name: `RcvbufErrors` counts the datagrams the
 * kernel dropped at a full receive buffer. */
function udpSnmp() {
  const [names, values] = readFileSync('/proc/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Udp:'))
    .map((l) => l.split(/\s+/).slice(1))
  return Object.fromEntries(names.map((n, i) => [n, Number(values[i])]))
}

async function cellRun(rep, size, name) {
  const proxy = PROXIES[name]
  const key = `udp/${size}/${name}`
  log(`rep ${rep + 1}: ${size}-byte datagrams, ${name}`)
  await rec.row(key, loadMissing ?? proxy.missing, async (started) => {
    const { proxy: p, port } = await echoBehind(
      started,
      LOAD,
      ['--duration', String(CFG.warmup + CFG.secs + 60)],
      proxy.start,
    )
    const cpu0 = p ? p.treeCpuSecs() : 0
    const snmp0 = udpSnmp()
    const t0 = Date.now()
    const c = await run(
      'udp-load client',
      LOAD,
      [
        'client',
        '--connect',
        `127.0.0.1:${port}`,
        '--sockets',
        String(CFG.clients),
        '--window',
        String(CFG.window),
        '--size',
        String(size),
        '--warmup',
        String(CFG.warmup),
        '--duration',
        String(CFG.secs),
      ],
      {},
      (CFG.warmup + CFG.secs + 30) * 1000,
    )
    const wall = (Date.now() - t0) / 1000
    const cpu1 = p ? p.treeCpuSecs() : 0
    const snmp1 = udpSnmp()
    const j = c.json('udp-load')
    if (!j) throw new Error(`udp-load client (exit ${c.code ?? c.signal}): ${c.stderr.trim().slice(-200)}`)
    if (j.mismatches > 0 || j.errors > 0) throw new Error(`udp-load: ${j.mismatches} mismatches, ${j.errors} errors`)
    if (j.dgrams === 0) throw new Error(`no echo came back through ${name} (sent ${j.sent}, lost ${j.lost})`)
    note(`${key}/rate`, j.dgrams_per_sec)
    note(`${key}/p50`, j.p50_us)
    note(`${key}/p99`, j.p99_us)
    note(`${key}/lost`, j.lost)
    note(`${key}/lostPct`, (100 * j.lost) / Math.max(1, j.sent))
    note(`${key}/rcvbufDrops`, snmp1.RcvbufErrors - snmp0.RcvbufErrors)
    note(`${key}/clientCpu`, (100 * j.cpu_secs) / wall)
    if (p) note(`${key}/cpuPerM`, (cpu1 - cpu0) / ((2 * j.received) / 1e6))
  })
}

// ---------------------------------------------------------------- tables

function udpTable(size) {
  const rows = CFG.rows.map((name) => {
    const k = `udp/${size}/${name}`
    const both = (a, b) => (isReason(a) ? a : `${a} / ${b}`)
    return [
      PROXIES[name].label,
      cell(`${k}/rate`, 0),
      both(cell(`${k}/p50`, 1), cell(`${k}/p99`, 1)),
      PROXIES[name].start ? cell(`${k}/cpuPerM`, 2) : '—',
      cell(`${k}/clientCpu`, 0),
      both(cell(`${k}/lost`, 0, { plain: true }), `${cell(`${k}/lostPct`, 3, { plain: true })} %`),
      cell(`${k}/rcvbufDrops`, 0, { plain: true }),
    ]
  })
  return table(
    [
      'path',
      'echoes/s',
      'round trip p50 / p99 µs',
      'proxy CPU-s per M datagrams',
      'client CPU %',
      'datagrams lost / % of sent',
      'kernel drops at full receive buffers',
    ],
    rows,
  )
}

/** Each sockmap row against each peer, from the medians: echoes/s, p99 and CPU per datagram. */
function ratioTable() {
  const peers = CFG.rows.filter((r) => !isSockmap(r) && PROXIES[r].start)
  const rows = []
  for (const size of CFG.sizes) {
    for (const ours of CFG.rows.filter(isSockmap)) {
      for (const peer of peers) {
        const r = (metric) => {
          const a = med(`udp/${size}/${ours}/${metric}`)
          const b = med(`udp/${size}/${peer}/${metric}`)
          return a !== undefined && b ? (a / b).toFixed(2) : '—'
        }
        rows.push([`${size} B`, ours, PROXIES[peer].label, r('rate'), r('p99'), r('cpuPerM')])
      }
    }
  }
  return table(['datagrams', 'sockmap row', '÷ peer', 'echoes/s', 'p99', 'CPU per M datagrams'], rows)
}

// ---------------------------------------------------------------- main

const t0 = Date.now()
const header = [
  cpuLine(),
  `Node ${process.version}; ${firstLine('nginx -v')}; ${firstLine('socat -V | grep "socat version"')}`,
].join('\n')
log(`rows: ${CFG.rows.join(', ')}; sizes ${CFG.sizes.join(', ')}; ${CFG.reps} repetition(s)`)
for (const name of CFG.rows) if (PROXIES[name].missing) log(`${name}: ${PROXIES[name].missing}`)
for (let rep = 0; rep < CFG.reps; rep++) {
  for (const size of CFG.sizes) {
    for (const name of CFG.rows) await cellRun(rep, size, name)
  }
}

const out = [...headerLines(header, CFG.reps, false, t0)]
out.push(
  `Cells: median of ${CFG.reps} interleaved repetitions (min–max); ${CFG.clients} client sockets × ${CFG.window} ` +
    `datagrams in flight, ${CFG.warmup} s warm-up, ${CFG.secs} s measured.`,
)
for (const size of CFG.sizes) {
  out.push(`\n#### UDP echo through a proxy, ${size}-byte datagrams\n`)
  out.push(udpTable(size))
}
if (CFG.rows.some(isSockmap)) {
  out.push('\n#### sockmap ÷ each peer (medians)\n')
  out.push(ratioTable())
}
const text = out.join('\n')
console.log(text)
const file = saveResults(ROOT, process.env.UDP_JSON, 'udp', { config: CFG, machine: header, results, markdown: text })
log(`raw results: ${path.relative(ROOT, file)}`)
process.exit(0)
