// A gateway under mixed load for a bounded time, checking every byte end to end and sampling the gateway's memory,
// descriptors and CPU.
//
//   npm run soak -- --minutes N [--concurrency C] [--shards S] [--json FILE]
//
// The gateway (this process) runs an engine: each accepted client is paired with an upstream connection to an echo
// server, and its lines are redirected to that upstream by a native rule (clients on odd ports) or by a TypeScript
// verdict that drops the lines starting with `D` (clients on even ports). The load (a child process) runs the echo
// servers and the clients:
// - connection churn: each client sends 1–200 lines of 1–2,000 bytes (the last one never dropped, so every line was
//   judged before it closes), checks that exactly the lines it expects come back in order, then ends (FIN) or resets
//   its connection, and a new client takes its place;
// - slow readers: some echo connections stop reading for a while (backpressure through the gateway);
// - random pauses: the gateway pauses random clients for up to 100 ms;
// - map updates at run time: the gateway inserts and deletes random sockets in a scratch map all the time.
// Every 5 s the gateway prints its RSS, open descriptors, CPU and counters. It exits non-zero if a byte is wrong or
// missing, a client stalls, the engine's drop counter differs from the lines the verdict had to drop, or memory or
// descriptors grow after warm-up.
import { fork } from 'node:child_process'
import { readdirSync, writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { parseArgs } from 'node:util'

const STALL_MS = 30_000

if (process.argv[2] === 'load') {
  runLoad()
} else {
  runGateway().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}

function lineOf(rng, seq, last) {
  const len = 1 + Math.floor(rng() * 2000)
  const drop = !last && rng() < 0.1
  const body = Buffer.alloc(len, 97 + (seq % 26))
  if (drop)
    body[0] = 0x44 // 'D'
  else if (body[0] === 0x44) body[0] = 0x45
  body.write(String(seq), 1 < len ? 1 : 0, 'latin1')
  return Buffer.concat([body, Buffer.from('\n')])
}

function mulberry32(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The load process: echo servers, then clients until told to stop. */
function runLoad() {
  const echo = createServer((s) => {
    s.on('error', () => {})
    s.pipe(s)
    if (Math.random() < 0.2) {
      // A slow reader: stops reading for a while, now and then.
      const t = setInterval(() => {
        s.pause()
        setTimeout(() => s.resume(), 50 + Math.random() * 200)
      }, 500)
      s.on('close', () => clearInterval(t))
    }
  })
  echo.listen(0, '127.0.0.1', () => process.send({ type: 'echo', port: echo.address().port }))

  let stopping = false
  const totals = { connections: 0, lines: 0, dropLines: 0, bytes: 0, failures: [] }
  let live = 0
  process.on('message', (m) => {
    if (m.type === 'start') {
      for (let i = 0; i < m.concurrency; i++) client(m.port, i * 7919 + 1)
    } else if (m.type === 'stop') {
      stopping = true
      if (live === 0) finish()
    }
  })
  const finish = () => {
    process.send({ type: 'done', totals })
    echo.close()
    setTimeout(() => process.exit(0), 100).unref()
  }

  function client(port, seed) {
    if (stopping) {
      if (live === 0) finish()
      return
    }
    live++
    const rng = mulberry32(seed)
    const sock = connect(port, '127.0.0.1')
    let judged = false
    const expected = []
    let got = Buffer.alloc(0)
    let sent = 0
    let dropLines = 0
    let done = false
    const stall = setTimeout(() => fail(`stalled with ${expected.length} lines outstanding`), STALL_MS)
    const fail = (why) => {
      if (done) return
      totals.failures.push(`client ${sock.localPort}: ${why}`)
      end(true)
    }
    const end = (reset) => {
      if (done) return
      done = true
      clearTimeout(stall)
      totals.connections++
      totals.lines += sent
      totals.dropLines += dropLines
      if (reset) sock.resetAndDestroy()
      else sock.end()
      live--
      setImmediate(() => client(port, seed + 104729))
    }
    sock.on('error', (err) => fail(`error ${err.code}`))
    sock.on('connect', () => {
      judged = sock.localPort % 2 === 0
      const n = 1 + Math.floor(rng() * 200)
      const chunks = []
      for (let i = 0; i < n; i++) {
        const line = lineOf(rng, i, i === n - 1)
        chunks.push(line)
        sent++
        totals.bytes += line.length
        if (judged && line[0] === 0x44) dropLines++
        else expected.push(line)
      }
      // Written in pieces of random size, so lines straddle reads.
      const all = Buffer.concat(chunks)
      let off = 0
      while (off < all.length) {
        const step = 1 + Math.floor(rng() * 8192)
        sock.write(all.subarray(off, off + step))
        off += step
      }
    })
    sock.on('data', (chunk) => {
      got = got.length ? Buffer.concat([got, chunk]) : chunk
      while (expected.length > 0 && got.length >= expected[0].length) {
        const want = expected.shift()
        if (!got.subarray(0, want.length).equals(want)) return fail('bytes differ from what was sent')
        got = got.subarray(want.length)
      }
      if (expected.length === 0) {
        if (got.length > 0) return fail(`${got.length} unexpected bytes`)
        end(rng() < 0.5)
      }
    })
  }
}

/** The gateway process. */
async function runGateway() {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '1' },
      concurrency: { type: 'string', default: '64' },
      shards: { type: 'string', default: '2' },
      json: { type: 'string' },
    },
  })
  const minutes = Number(values.minutes)
  const concurrency = Number(values.concurrency)
  const shards = Number(values.shards)
  if (!(minutes > 0) || !(concurrency > 0) || !(shards >= 1)) {
    console.error('soak: --minutes, --concurrency and --shards take positive numbers')
    process.exit(2)
  }
  const { Engine, parsers, rules, Verdict } = await import('../dist/index.mjs')

  const load = fork(new URL(import.meta.url).pathname, ['load'], { stdio: 'inherit' })
  const echoPort = await new Promise((resolve) => load.once('message', (m) => resolve(m.port)))

  const engine = new Engine({ shards })
  const errors = {}
  engine.on('error', (err) => (errors[err.code] = (errors[err.code] ?? 0) + 1))
  const peers = engine.sockHash({ maxEntries: 1 << 16 })
  const upstreams = engine.sockMap({ maxEntries: 1 << 16 })
  const plain = engine.sockMap({ maxEntries: 1 << 16 })
  const judged = engine.sockMap({ maxEntries: 1 << 16 })
  const scratch = engine.sockHash({ maxEntries: 256 })
  const lines = () =>
    parsers.delimiter({ delimiters: ['\n'], maxLength: 4096, stripDelimiter: false, discardOversize: false })
  upstreams.attach({ parser: parsers.none(), verdict: rules.redirect(peers, rules.key.socket) })
  plain.attach({ parser: lines(), verdict: rules.redirect(peers, rules.key.socket) })
  judged.attach({
    parser: lines(),
    verdict: (msg) => (msg.data[0] === 0x44 ? Verdict.DROP : msg.redirect(peers, msg.socket)),
    peekBytes: 1,
  })

  const live = new Set()
  let slot = 0
  const server = await engine.listen({ host: '127.0.0.1', port: 0 })
  server.on('connection', async (client) => {
    client.on('error', (err) => (errors[err.code] = (errors[err.code] ?? 0) + 1))
    let up
    try {
      up = await engine.connect({ host: '127.0.0.1', port: echoPort, near: client })
    } catch (err) {
      errors[err.code] = (errors[err.code] ?? 0) + 1
      client.destroy()
      return
    }
    up.on('error', (err) => (errors[err.code] = (errors[err.code] ?? 0) + 1))
    if (client.closed) return up.destroy()
    engine.pair(client, up)
    peers.set(client.id, up)
    peers.set(up.id, client)
    const i = slot++ % (1 << 16)
    upstreams.set(i, up)
    ;(client.remoteAddress.port % 2 === 0 ? judged : plain).set(i, client)
    live.add(client)
    client.on('close', () => live.delete(client))
  })

  // Random pauses and map updates at run time.
  const chaos = setInterval(() => {
    for (const s of live) {
      const r = Math.random()
      if (r < 0.05) {
        s.pause()
        setTimeout(() => s.closed || s.resume(), Math.random() * 100)
      } else if (r < 0.1 && !s.closed) {
        try {
          scratch.set(Math.floor(Math.random() * 256), s)
        } catch {
          // A socket that closed meanwhile is refused; nothing to count.
        }
      } else if (r < 0.15) {
        const k = Math.floor(Math.random() * 256)
        if (scratch.has(k)) scratch.delete(k)
      }
    }
  }, 50)

  const fds = () => readdirSync('/proc/self/fd').length
  const samples = []
  const t0 = Date.now()
  const cpu0 = process.cpuUsage()
  const sample = () => {
    const c = process.cpuUsage(cpu0)
    const t = engine.stats().totals
    const s = {
      t: (Date.now() - t0) / 1000,
      rssMiB: process.memoryUsage().rss / 2 ** 20,
      fds: fds(),
      cpuS: (c.user + c.system) / 1e6,
      bytesIn: t.bytesIn,
      dropped: t.dropped,
      sockets: live.size,
    }
    samples.push(s)
    console.log(
      `soak ${s.t.toFixed(0).padStart(5)} s  rss ${s.rssMiB.toFixed(1)} MiB  fds ${s.fds}  cpu ${s.cpuS.toFixed(1)} s  ` +
        `clients ${s.sockets}  in ${(s.bytesIn / 2 ** 20).toFixed(0)} MiB  dropped ${s.dropped}`,
    )
  }
  const baseFds = fds()
  load.send({ type: 'start', port: server.address().port, concurrency })
  const ticker = setInterval(sample, 5000)
  await new Promise((r) => setTimeout(r, minutes * 60_000))
  load.send({ type: 'stop' })
  const totals = await new Promise((resolve) => load.on('message', (m) => m.type === 'done' && resolve(m.totals)))
  clearInterval(chaos)
  // The last clients' sockets close on the engine's side shortly after the load ends.
  const deadline = Date.now() + 10_000
  while (live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  sample()
  clearInterval(ticker)
  const stats = engine.stats()
  await engine.close()
  server.close?.()

  const warm = samples.find((s) => s.t >= Math.min(30, (minutes * 60) / 4)) ?? samples[0]
  const peak = samples.reduce((a, s) => (s.rssMiB > a.rssMiB ? s : a), samples[0])
  const end = samples[samples.length - 1]
  const problems = [...totals.failures.slice(0, 20)]
  if (totals.failures.length > 20) problems.push(`... ${totals.failures.length - 20} more`)
  if (stats.totals.dropped !== totals.dropLines)
    problems.push(`engine dropped ${stats.totals.dropped} messages, the verdict had ${totals.dropLines} to drop`)
  if (live.size > 0) problems.push(`${live.size} client sockets still open after the load ended`)
  if (end.fds > baseFds + 2) problems.push(`descriptors: ${baseFds} before, ${end.fds} after`)
  if (end.rssMiB > warm.rssMiB * 1.25 + 16)
    problems.push(`RSS grew after warm-up: ${warm.rssMiB.toFixed(1)} → ${end.rssMiB.toFixed(1)} MiB`)
  const report = {
    minutes,
    concurrency,
    shards,
    backend: engine.backend,
    connections: totals.connections,
    lines: totals.lines,
    bytesSent: totals.bytes,
    bytesThroughGateway: stats.totals.bytesIn,
    droppedByVerdict: stats.totals.dropped,
    errorsByCode: errors,
    rssMiB: { warm: warm.rssMiB, peak: peak.rssMiB, end: end.rssMiB },
    fds: { before: baseFds, warm: warm.fds, peak: Math.max(...samples.map((s) => s.fds)), end: end.fds },
    cpuSeconds: end.cpuS,
    problems,
  }
  console.log(JSON.stringify(report, null, 2))
  if (values.json) writeFileSync(values.json, JSON.stringify({ ...report, samples }, null, 2))
  process.exit(problems.length === 0 ? 0 : 1)
}
