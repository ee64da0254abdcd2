// A TLS-terminating proxy, side by side: sockmap (engine TLS, a native redirect between paired sockets) against
// HAProxy (OpenSSL) and a Node `tls` proxy (`pipe()`), same certificate (ECDSA P-256), same clients, same plain-TCP
// backend, each proxy on one thread in its own process. Measured, one proxy at a time:
//   - handshakes, full and resumed (TLS 1.3): TLS_HS_CLIENTS `openssl s_time -new` / `-reuse` processes at once for
//     TLS_HS_S seconds: handshakes/s (their sum), and the proxy's CPU milliseconds (user + system) per handshake,
//     the figure that does not depend on how fast the clients are (for sockmap, with its I/O threads' share);
//   - bulk: one Node TLS client sends TLS_BULK_MB MiB through the proxy to a sink: Gbit/s, and the proxy's CPU
//     seconds (user + system, from /proc) per GB;
//   - latency: TLS_RTT 64-byte request/response round trips, one at a time, through the proxy to an echo: p50/p99;
//     the same without a proxy and without TLS (client → backend) is the baseline;
//   - RSS per idle TLS connection: the proxy's VmRSS before and after TLS_IDLE idle client connections (each with
//     its upstream connection), divided by TLS_IDLE.
// Bounded: every phase has a deadline, and the script stops its children when done.
//
//   npm run build && node benchmark/tls/run.mjs   (TLS_HS_S=5 TLS_HS_CLIENTS=2 TLS_BULK_MB=1024 TLS_RTT=5000
//   TLS_IDLE=2000)
import { execFileSync, fork, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath, pathToFileURL } from 'node:url'

const HS_S = Number(process.env.TLS_HS_S ?? 5)
const HS_CLIENTS = Number(process.env.TLS_HS_CLIENTS ?? 2)
const BULK_MB = Number(process.env.TLS_BULK_MB ?? 1024)
const RTT = Number(process.env.TLS_RTT ?? 5000)
const IDLE = Number(process.env.TLS_IDLE ?? 2000)
/** The name sockmap gives its I/O threads. */
const IO_THREAD = 'sockmap-io'
const self = fileURLToPath(import.meta.url)
const wait = (ms) => new Promise((r) => setTimeout(r, ms))
/** Every child this script started, stopped whatever happens. */
const children = []
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')))

function deadline(p, ms, what) {
  let t
  return Promise.race([
    p,
    new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: over ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(t))
}

/** The backend (child): first byte 'E' echoes, 'S' + u64 length sinks that many bytes then answers 'K'. */
async function backend() {
  const srv = net.createServer((s) => {
    s.setNoDelay(true)
    s.on('error', () => {})
    let mode
    let left = 0n
    let head = Buffer.alloc(0)
    s.on('data', (d) => {
      if (mode === 'E') return void s.write(d)
      if (mode === 'S') {
        left -= BigInt(d.length)
        if (left <= 0n) s.write('K')
        return
      }
      head = Buffer.concat([head, d])
      if (head[0] === 0x45) {
        mode = 'E'
        if (head.length > 1) s.write(head.subarray(1))
      } else if (head.length >= 9) {
        mode = 'S'
        left = head.readBigUInt64BE(1) - BigInt(head.length - 9)
        if (left <= 0n) s.write('K')
      }
    })
  })
  await new Promise((r) => srv.listen(0, '127.0.0.1', r))
  process.send({ port: srv.address().port })
}

/** The sockmap proxy (child). */
async function sockmapProxy(certDir, upstreamPort) {
  const { Engine, rules } = await import(
    pathToFileURL(join(fileURLToPath(new URL('../../dist/', import.meta.url)), 'index.js')).href
  )
  const engine = new Engine({ shards: 1 })
  const server = await engine.listen({
    host: '127.0.0.1',
    port: 0,
    backlog: 4096,
    tls: { cert: readFileSync(join(certDir, 'cert.pem')), key: readFileSync(join(certDir, 'key.pem')) },
  })
  const peers = engine.sockHash({ maxEntries: 65536 })
  peers.attach({ verdict: rules.redirect(peers, rules.key.socket) })
  server.on('connection', (client) => {
    client.on('error', () => {})
    engine.connect({ host: '127.0.0.1', port: upstreamPort, near: client }).then(
      (up) => {
        up.on('error', () => {})
        // The entries first: the client's first bytes are judged as soon as it has programs. A client gone
        // meanwhile (s_time closes at once) refuses them: its upstream goes too.
        try {
          peers.set(client.id, up)
          peers.set(up.id, client)
          engine.pair(client, up)
          if (process.env.TLS_DEBUG)
            process.on('message', () => console.error('CLIENT', client.stats(), 'UP', up.stats()))
        } catch {
          up.destroy()
        }
      },
      () => client.destroy(),
    )
  })
  process.send({ port: server.address().port, backend: engine.backend })
}

/** The Node `tls` proxy (child). */
async function nodeProxy(certDir, upstreamPort) {
  const srv = tls.createServer(
    { cert: readFileSync(join(certDir, 'cert.pem')), key: readFileSync(join(certDir, 'key.pem')) },
    (s) => {
      const u = net.connect({ host: '127.0.0.1', port: upstreamPort })
      s.setNoDelay(true)
      u.setNoDelay(true)
      s.on('error', () => u.destroy())
      u.on('error', () => s.destroy())
      s.pipe(u)
      u.pipe(s)
    },
  )
  srv.on('tlsClientError', () => {})
  await new Promise((r) => srv.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r))
  process.send({ port: srv.address().port })
}

function childPort(child) {
  return deadline(new Promise((r) => child.once('message', r)), 20000, 'child start')
}

async function haproxy(certDir, upstreamPort) {
  const port = await freePort()
  const cfg = join(certDir, 'haproxy.cfg')
  writeFileSync(
    cfg,
    [
      'global',
      '  nbthread 1',
      '  maxconn 8000',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 120s',
      '  timeout server 120s',
      'frontend tls',
      `  bind 127.0.0.1:${port} ssl crt ${join(certDir, 'combined.pem')}`,
      '  default_backend plain',
      'backend plain',
      `  server s1 127.0.0.1:${upstreamPort}`,
      '',
    ].join('\n'),
  )
  const child = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] })
  children.push(child)
  for (let i = 0; i < 200; i++) {
    if (await canConnect(port)) return { child, port }
    await wait(25)
  }
  throw new Error('haproxy did not start')
}

function freePort() {
  return new Promise((r) => {
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => r(p))
    })
  })
}

function canConnect(port) {
  return new Promise((r) => {
    const c = net.connect({ host: '127.0.0.1', port }, () => {
      c.destroy()
      r(true)
    })
    c.on('error', () => r(false))
  })
}

/** User + system CPU seconds of a process, or of those of its threads whose name starts with `thread`. */
function cpuSeconds(pid, thread) {
  const of = (stat) => {
    const f = readFileSync(stat, 'utf8').split(') ')[1].split(' ')
    return (Number(f[11]) + Number(f[12])) / 100
  }
  if (thread === undefined) return of(`/proc/${pid}/stat`)
  let sum = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').startsWith(thread))
        sum += of(`/proc/${pid}/task/${tid}/stat`)
    } catch {
      // The thread ended meanwhile.
    }
  }
  return sum
}

function rssKiB(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1])
}

/** One `openssl s_time` client: the connections it made and the seconds it took. */
function sTime(port, mode, caFile) {
  return new Promise((resolve, reject) => {
    const args = ['s_time', '-connect', `127.0.0.1:${port}`, mode, '-time', String(HS_S), '-tls1_3', '-CAfile', caFile]
    const c = spawn('openssl', args, { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(c)
    let out = ''
    c.stdout.on('data', (d) => (out += d))
    const t = setTimeout(() => c.kill('SIGKILL'), (HS_S + 30) * 1000)
    c.on('close', () => {
      clearTimeout(t)
      const m = /(\d+) connections in ([\d.]+)s/.exec(out)
      if (m) resolve({ connections: Number(m[1]), seconds: Number(m[2]) })
      else reject(new Error(`s_time ${mode}: no count in its output`))
    })
  })
}

/**
 * HS_CLIENTS `s_time` clients at once: handshakes/s (their sum), the proxy's CPU ms per handshake, and for sockmap
 * the share of its I/O threads (the rest is the JavaScript thread: the application's 'connection' handler).
 */
async function handshakes(port, mode, caFile, pid) {
  const cpu0 = cpuSeconds(pid)
  const io0 = cpuSeconds(pid, IO_THREAD)
  const runs = await Promise.all(Array.from({ length: HS_CLIENTS }, () => sTime(port, mode, caFile)))
  const cpu = cpuSeconds(pid) - cpu0
  const io = cpuSeconds(pid, IO_THREAD) - io0
  const connections = runs.reduce((n, r) => n + r.connections, 0)
  return {
    perSecond: Math.round(runs.reduce((n, r) => n + r.connections / r.seconds, 0)),
    cpuMs: (cpu * 1000) / connections,
    ioMs: (io * 1000) / connections,
  }
}

/** Milliseconds per handshake, with the I/O threads' share where the proxy has them. */
function perHandshake(h) {
  return h.ioMs > 0 ? `${h.cpuMs.toFixed(3)} (${h.ioMs.toFixed(3)})` : h.cpuMs.toFixed(3)
}

function tlsConnect(port, ca) {
  return new Promise((resolve, reject) => {
    const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca }, () => resolve(c))
    c.on('error', reject)
  })
}

async function bulk(port, ca) {
  const c = await tlsConnect(port, ca)
  const total = BULK_MB * 1024 * 1024
  const head = Buffer.alloc(9)
  head[0] = 0x53
  head.writeBigUInt64BE(BigInt(total), 1)
  const chunk = Buffer.alloc(256 * 1024, 0x61)
  const done = new Promise((r) => c.once('data', r))
  const t0 = process.hrtime.bigint()
  c.write(head)
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!c.write(chunk)) await new Promise((r) => c.once('drain', r))
  }
  await deadline(done, 120000, 'bulk')
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  c.destroy()
  return { gbits: (total * 8) / s / 1e9, seconds: s, bytes: total }
}

async function latency(sock) {
  sock.setNoDelay(true)
  sock.write('E')
  const msg = Buffer.alloc(64, 0x62)
  const times = []
  for (let i = 0; i < RTT; i++) {
    const t0 = process.hrtime.bigint()
    const got = new Promise((r) => {
      let n = 0
      const on = (d) => {
        n += d.length
        if (n >= 64) {
          sock.off('data', on)
          r()
        }
      }
      sock.on('data', on)
    })
    sock.write(msg)
    await deadline(got, 5000, 'round trip')
    times.push(Number(process.hrtime.bigint() - t0) / 1000)
  }
  sock.destroy()
  times.sort((a, b) => a - b)
  return { p50: times[Math.floor(times.length / 2)], p99: times[Math.floor(times.length * 0.99)] }
}

async function idle(port, ca, pid) {
  const before = rssKiB(pid)
  const held = []
  for (let i = 0; i < IDLE; i += 50) {
    held.push(...(await Promise.all(Array.from({ length: Math.min(50, IDLE - i) }, () => tlsConnect(port, ca)))))
  }
  await wait(2000)
  const after = rssKiB(pid)
  for (const c of held) c.destroy()
  return ((after - before) * 1024) / IDLE
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'sockmap-tls-bench-'))
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '7',
      '-keyout',
      'key.pem',
      '-out',
      'cert.pem',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { cwd: dir, stdio: 'pipe' },
  )
  writeFileSync(
    join(dir, 'combined.pem'),
    readFileSync(join(dir, 'cert.pem'), 'utf8') + readFileSync(join(dir, 'key.pem'), 'utf8'),
  )
  const ca = readFileSync(join(dir, 'cert.pem'))
  const caFile = join(dir, 'cert.pem')

  const be = fork(self, ['backend'])
  children.push(be)
  const { port: bport } = await childPort(be)
  const results = []
  const base = await new Promise((r) => {
    const c = net.connect({ host: '127.0.0.1', port: bport }, () => r(c))
  })
  const baseline = await latency(base)
  console.log(
    `baseline (no proxy, no TLS): 64-byte RTT p50 ${baseline.p50.toFixed(1)} µs, p99 ${baseline.p99.toFixed(1)} µs`,
  )

  for (const name of ['sockmap', 'haproxy', 'node tls']) {
    let child
    let port
    let extra = ''
    if (name === 'haproxy') ({ child, port } = await haproxy(dir, bport))
    else {
      child = fork(self, [name === 'sockmap' ? 'proxy-sockmap' : 'proxy-node', dir, String(bport)])
      children.push(child)
      const m = await childPort(child)
      port = m.port
      if (m.backend) extra = ` (${m.backend})`
    }
    try {
      const full = await handshakes(port, '-new', caFile, child.pid)
      const resumed = await handshakes(port, '-reuse', caFile, child.pid)
      const cpu0 = cpuSeconds(child.pid)
      const b = await bulk(port, ca)
      const cpuPerGB = ((cpuSeconds(child.pid) - cpu0) / b.bytes) * 1e9
      const lat = await latency(await tlsConnect(port, ca))
      const rss = await idle(port, ca, child.pid)
      const row = { name: name + extra, full, resumed, gbits: b.gbits, cpuPerGB, p50: lat.p50, p99: lat.p99, rss }
      results.push(row)
      console.log(JSON.stringify(row))
    } finally {
      child.kill('SIGKILL')
    }
  }
  be.kill('SIGKILL')
  console.log(
    `\n| proxy | full handshakes/s (${HS_CLIENTS} clients) | proxy CPU ms per full (I/O threads) | resumed/s | proxy CPU ms per resumed (I/O threads) | bulk Gbit/s | proxy CPU s/GB | 64 B RTT p50 / p99 µs | RSS per idle TLS connection |`,
  )
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const r of results) {
    console.log(
      `| ${r.name} | ${r.full.perSecond} | ${perHandshake(r.full)} | ${r.resumed.perSecond} | ${perHandshake(r.resumed)} | ${r.gbits.toFixed(2)} | ${r.cpuPerGB.toFixed(2)} | ${r.p50.toFixed(0)} / ${r.p99.toFixed(0)} | ${(r.rss / 1024).toFixed(1)} KiB |`,
    )
  }
  console.log(
    `baseline, no proxy and no TLS: 64 B RTT p50 / p99 ${baseline.p50.toFixed(0)} / ${baseline.p99.toFixed(0)} µs`,
  )
  process.exit(0)
}

const [role, a, b] = process.argv.slice(2)
if (role === 'backend') await backend()
else if (role === 'proxy-sockmap') await sockmapProxy(a, Number(b))
else if (role === 'proxy-node') await nodeProxy(a, Number(b))
else
  await deadline(main(), 900000, 'benchmark').catch((e) => {
    console.error(e)
    process.exit(1)
  })
