// `npm run bench:peers`: the sockmap gateways next to their peers, in one run, on loopback.
//
//   Redis: redis-benchmark -t set,get -d 64 -r 100000 -c 50 at -P 1 and -P 16, direct; twemproxy (nutcracker, 1 and 2
//   backends); HAProxy TCP; sockmap's raw TCP proxy; the sockmap Redis gateway with native rules only (1 and 2
//   backends) and with a TS verdict.
//   HTTP/1: wrk -t1 -c50 against a Node http backend, direct; HAProxy TCP; http-proxy (npm); the sockmap router.
//
// Each row: throughput, p50/p99, the proxy process's CPU per million requests (utime+stime from /proc/PID/stat),
// its peak RSS (VmHWM), and the ratio to direct. Every cell runs REPS times (default 2), rows interleaved, and the
// median is reported. Bounded: BENCH_REDIS_N requests per redis-benchmark run (default 200000), BENCH_HTTP_SECONDS
// per wrk run (default 4). A row whose program or engine feature is missing says so instead of a number.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { have, configFile, startHaproxy, startRedis } from '../engine/peers.mjs'
import { Proc, cpuLine, freePort, median, redisBenchmark, run, waitListen } from '../engine/procs.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(HERE, '../..')
const CLI = path.join(ROOT, 'dist/cli.js')
const REPS = Number(process.env.BENCH_REPS ?? 2)
const N = Number(process.env.BENCH_REDIS_N ?? 200000)
const HTTP_SECONDS = Number(process.env.BENCH_HTTP_SECONDS ?? 4)
const ONLY = (process.env.BENCH_ONLY ?? 'redis,http').split(',')

async function startNutcracker(backends) {
  const port = await freePort()
  const servers = backends.map((b, i) => `    - 127.0.0.1:${b}:1 s${i}`).join('\n')
  const file = configFile(
    'nutcracker.yml',
    `pool:\n  listen: 127.0.0.1:${port}\n  hash: fnv1a_64\n  distribution: ketama\n  hash_tag: "{}"\n  redis: true\n  server_connections: 1\n  auto_eject_hosts: false\n  servers:\n${servers}\n`,
  )
  const p = new Proc('nutcracker', 'nutcracker', ['-c', file, '-s', String(await freePort())])
  await waitListen(port)
  return { port, proc: p }
}

async function startSockmap(args) {
  const p = new Proc('sockmap', process.execPath, [CLI, ...args])
  const line = await p.waitLine((l) => /listening on/.test(l), 15000)
  return { port: Number(/:(\d+)$/.exec(line)[1]), proc: p }
}

async function startNode(script, args) {
  const p = new Proc(path.basename(script), process.execPath, [path.join(HERE, script), ...args.map(String)])
  await p.ready()
  return p
}

/** One redis-benchmark run: { set: {rps, p50, p99}, get: {...} } (latencies in µs) */
async function redisBench(port, pipeline) {
  const out = await redisBenchmark(port, N, pipeline)
  const row = (r) => ({ rps: r.rps, p50: r.p50_latency_ms * 1000, p99: r.p99_latency_ms * 1000 })
  return { set: row(out.SET), get: row(out.GET), requests: 2 * N }
}

/** One wrk run: { rps, p50, p99, requests, errors } */
async function wrkBench(port) {
  const p = await run(
    'wrk',
    'wrk',
    ['-t1', '-c50', `-d${HTTP_SECONDS}s`, '--latency', `http://127.0.0.1:${port}/`],
    {},
    (HTTP_SECONDS + 30) * 1000,
  )
  const text = p.lines.join('\n')
  const us = (v, unit) => Number(v) * ({ us: 1, ms: 1000, s: 1e6 }[unit] ?? NaN)
  const lat = (pct) => {
    const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(text)
    return m ? us(m[1], m[2]) : NaN
  }
  const total = /(\d+) requests in/.exec(text)
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(text)
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
  return {
    rps: Number((/Requests\/sec:\s+([\d.]+)/.exec(text) ?? [])[1]),
    p50: lat(50),
    p99: lat(99),
    requests: Number(total?.[1] ?? 0),
    errors: Number(errors?.[1] ?? 0) + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
  }
}

/** Measures `bench` through a proxy process (or direct when `proc` is undefined). */
async function measured(proc, bench) {
  const cpu0 = proc ? proc.cpuSecs() : 0
  const r = await bench()
  if (proc) {
    r.cpuPerM = ((proc.cpuSecs() - cpu0) / r.requests) * 1e6
    r.hwm = proc.mem().hwm
  }
  return r
}

async function redisRows() {
  const missing = ['redis-server', 'redis-benchmark'].filter((c) => !have(c))
  if (missing.length) return { note: `Redis rows skipped: ${missing.join(', ')} not installed` }
  const a = await startRedis()
  const b = await startRedis()
  const rows = [
    { name: 'direct', start: async () => ({ port: a.port }) },
    have('nutcracker')
      ? { name: 'twemproxy, 1 backend', start: () => startNutcracker([a.port]) }
      : { name: 'twemproxy, 1 backend', skip: 'nutcracker not installed' },
    have('nutcracker')
      ? { name: 'twemproxy, 2 backends', start: () => startNutcracker([a.port, b.port]) }
      : { name: 'twemproxy, 2 backends', skip: 'nutcracker not installed' },
    have('haproxy')
      ? {
          name: 'HAProxy TCP',
          start: async () => {
            const port = await freePort()
            return { port, proc: await startHaproxy(port, a.port) }
          },
        }
      : { name: 'HAProxy TCP', skip: 'haproxy not installed' },
    {
      name: 'sockmap proxy (raw, per-client upstream)',
      start: () => startSockmap(['proxy', '--listen', '127.0.0.1:0', '--upstream', `127.0.0.1:${a.port}`]),
    },
    {
      name: 'sockmap redis, native, 1 backend',
      start: () => startSockmap(['redis', '--listen', '127.0.0.1:0', '--upstream', `127.0.0.1:${a.port}`]),
    },
    {
      name: 'sockmap redis, native, 2 backends',
      start: () =>
        startSockmap([
          'redis',
          '--listen',
          '127.0.0.1:0',
          '--upstream',
          `127.0.0.1:${a.port}`,
          '--upstream',
          `127.0.0.1:${b.port}`,
        ]),
    },
    {
      name: 'sockmap redis, TS verdict, 1 backend',
      start: () =>
        startSockmap([
          'redis',
          '--listen',
          '127.0.0.1:0',
          '--upstream',
          `127.0.0.1:${a.port}`,
          '--verdict',
          path.join(HERE, 'verdict.mjs'),
        ]),
    },
  ]
  const samples = new Map()
  for (let rep = 0; rep < REPS; rep++) {
    for (const row of rows) {
      if (row.skip) continue
      let target
      try {
        target = await row.start()
      } catch (e) {
        row.skip = String(e.message).split('\n')[0].slice(0, 120)
        continue
      }
      for (const P of [1, 16]) {
        try {
          const r = await measured(target.proc, () => redisBench(target.port, P))
          const k = `${row.name}|${P}`
          samples.set(k, [...(samples.get(k) ?? []), r])
        } catch (e) {
          row.skip = String(e.message).split('\n')[0].slice(0, 120)
        }
      }
      await target.proc?.stop()
      process.stderr.write(`redis rep ${rep + 1}/${REPS}: ${row.name} done\n`)
    }
  }
  await a.proc.stop()
  await b.proc.stop()
  return { rows, samples }
}

async function httpRows() {
  if (!have('wrk')) return { note: 'HTTP rows skipped: wrk not installed' }
  const backendPort = await freePort()
  const backend = await startNode('http-backend.mjs', [backendPort])
  const rows = [
    { name: 'direct', start: async () => ({ port: backendPort }) },
    have('haproxy')
      ? {
          name: 'HAProxy TCP',
          start: async () => {
            const port = await freePort()
            return { port, proc: await startHaproxy(port, backendPort) }
          },
        }
      : { name: 'HAProxy TCP', skip: 'haproxy not installed' },
    {
      name: 'http-proxy (npm)',
      start: async () => {
        const port = await freePort()
        return { port, proc: await startNode('node-http-proxy.mjs', [port, backendPort]) }
      },
    },
    {
      name: 'sockmap http router',
      start: () =>
        startSockmap([
          'http',
          '--listen',
          '127.0.0.1:0',
          '--route',
          `/=127.0.0.1:${backendPort}`,
          '--connections',
          '4',
        ]),
    },
  ]
  const samples = new Map()
  for (let rep = 0; rep < REPS; rep++) {
    for (const row of rows) {
      if (row.skip) continue
      let target
      try {
        target = await row.start()
        const r = await measured(target.proc, () => wrkBench(target.port))
        if (r.errors > 0) r.note = `${r.errors} errors`
        samples.set(row.name, [...(samples.get(row.name) ?? []), r])
      } catch (e) {
        row.skip = String(e.message).split('\n')[0].slice(0, 120)
      }
      await target?.proc?.stop()
      process.stderr.write(`http rep ${rep + 1}/${REPS}: ${row.name} done\n`)
    }
  }
  await backend.stop()
  return { rows, samples }
}

const fmt = (v, d = 0) => (Number.isFinite(v) ? v.toLocaleString('en', { maximumFractionDigits: d }) : '—')
const mb = (b) => (Number.isFinite(b) ? `${(b / 1048576).toFixed(0)} MB` : '—')

function cell(rs, pick) {
  const xs = rs.map(pick).filter(Number.isFinite)
  return { med: median(xs), min: Math.min(...xs), max: Math.max(...xs) }
}

function redisTable({ rows, samples, note }) {
  if (note) return [note]
  const out = [
    '| row | -P | SET ops/s | GET ops/s | × direct (SET / GET) | SET p50 / p99 µs | proxy CPU-s per M req | peak RSS |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for (const P of [1, 16]) {
    const direct = samples.get(`direct|${P}`) ?? []
    const dSet = cell(direct, (r) => r.set.rps).med
    const dGet = cell(direct, (r) => r.get.rps).med
    for (const row of rows) {
      const rs = samples.get(`${row.name}|${P}`)
      if (!rs || rs.length === 0) {
        out.push(`| ${row.name} | ${P} | n/a: ${row.skip ?? 'no sample'} | | | | | |`)
        continue
      }
      const set = cell(rs, (r) => r.set.rps)
      const get = cell(rs, (r) => r.get.rps)
      out.push(
        `| ${row.name} | ${P} | ${fmt(set.med)} (${fmt(set.min)}–${fmt(set.max)}) | ${fmt(get.med)} | ` +
          `${(set.med / dSet).toFixed(2)} / ${(get.med / dGet).toFixed(2)} | ` +
          `${fmt(cell(rs, (r) => r.set.p50).med)} / ${fmt(cell(rs, (r) => r.set.p99).med)} | ` +
          `${row.name === 'direct' ? '—' : fmt(cell(rs, (r) => r.cpuPerM).med, 1)} | ${row.name === 'direct' ? '—' : mb(cell(rs, (r) => r.hwm).med)} |`,
      )
    }
  }
  return out
}

function httpTable({ rows, samples, note }) {
  if (note) return [note]
  const out = [
    '| row | req/s | × direct | p50 / p99 µs | proxy CPU-s per M req | peak RSS | errors |',
    '|---|---|---|---|---|---|---|',
  ]
  const d = cell(samples.get('direct') ?? [], (r) => r.rps).med
  for (const row of rows) {
    const rs = samples.get(row.name)
    if (!rs || rs.length === 0) {
      out.push(`| ${row.name} | n/a: ${row.skip ?? 'no sample'} | | | | | |`)
      continue
    }
    const c = cell(rs, (r) => r.rps)
    out.push(
      `| ${row.name} | ${fmt(c.med)} (${fmt(c.min)}–${fmt(c.max)}) | ${(c.med / d).toFixed(2)} | ` +
        `${fmt(cell(rs, (r) => r.p50).med)} / ${fmt(cell(rs, (r) => r.p99).med)} | ` +
        `${row.name === 'direct' ? '—' : fmt(cell(rs, (r) => r.cpuPerM).med, 1)} | ${row.name === 'direct' ? '—' : mb(cell(rs, (r) => r.hwm).med)} | ` +
        `${rs.reduce((n, r) => n + r.errors, 0)} |`,
    )
  }
  return out
}

async function main() {
  if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run `npm run build` first')
  const t0 = Date.now()
  const load = execFileSync('cat', ['/proc/loadavg']).toString().split(' ').slice(0, 3).join(' ')
  const lines = [
    `${cpuLine()}; Node ${process.version}; ${new Date().toISOString().slice(0, 16)} UTC; load before: ${load}; ${REPS} reps, median (range)`,
    '',
  ]
  if (ONLY.includes('redis')) {
    lines.push(
      `Redis: redis-benchmark -t set,get -d 64 -r 100000 -c 50 -n ${N}`,
      '',
      ...redisTable(await redisRows()),
      '',
    )
  }
  if (ONLY.includes('http')) {
    lines.push(
      `HTTP/1: wrk -t1 -c50 -d${HTTP_SECONDS}s, Node http backend (12-byte body)`,
      '',
      ...httpTable(await httpRows()),
      '',
    )
  }
  lines.push(`(${((Date.now() - t0) / 1000).toFixed(0)} s)`)
  console.log(lines.join('\n'))
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
