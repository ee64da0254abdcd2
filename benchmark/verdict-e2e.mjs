// End to end: a trivial TypeScript verdict routing 64-byte length-prefixed frames (client → router → one of two
// sinks, by the frame's first payload byte), side by side in one run:
//   sockmap, TS verdict       parsers.lengthField({ lengthFieldLength: 4 }) + the verdict, batches of up to 1024
//   sockmap, TS verdict, b=1  the same, batch.maxMessages 1 (one boundary crossing per message)
//   node:net router           parse each frame in JS, call the same verdict, coalesce writes per target
//   sockmap, native rule      the same routing as a native rule (no JavaScript per message), for reference
// The load (clients and sinks, benchmark/verdict-load.mjs) runs in a child process. For each router it reports
// messages/s, the router process's CPU (utime + stime from /proc/self/stat, I/O thread included) per million
// messages, and the sinks' p50/p99 latency (send → sink, queueing included: at most E2E_WINDOW frames in flight).
//
//
// With E2E_PROTO=resp the frames are 64-byte RESP commands framed by parsers.resp(), routed by their first key over the
// two sinks: `resp` (a TS verdict hashing msg.resp.key), `resp-bytes` (a TS verdict that reads no metadata, routing by a
// byte of the key) and `resp-native` (rules.hashRoute(out, rules.key.resp)); the default rows are then these three.
//
//   npm run build && node benchmark/verdict-e2e.mjs     (E2E_SECONDS=3 E2E_CONNS=16 E2E_ROUTERS=ts,ts1,inline,node,native)
//   E2E_PROTO=resp node benchmark/verdict-e2e.mjs        (E2E_ROUTERS=resp,resp-bytes,resp-native)
import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

import { Engine, parsers, rules } from '../dist/index.mjs'

const SECONDS = Number(process.env.E2E_SECONDS ?? 3)
const WARMUP = Number(process.env.E2E_WARMUP ?? 1)
const FRAME = 64
const HZ = 100 // USER_HZ: the unit of utime/stime in /proc/self/stat on Linux

/** The verdict every router runs: frames tagged 'A' go to sink 0, the others to sink 1. */
const verdict = (msg) => msg.redirect(sinksOf(msg), msg.data[4] === 0x41 ? 0 : 1)
let sinksOf = () => undefined

/** Process CPU seconds (all threads) from /proc/self/stat. */
function cpuSeconds() {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / HZ // fields 14 and 15 (utime, stime), counted from after the name
}

/** A string's FNV-1a hash, 32 bits. */
function fnv(s) {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

async function sockmapRouter(sinkPorts, { maxMessages, native, resp, drive }) {
  const engine = new Engine({ drive, batch: { maxMessages, maxDelayMicros: 50 } })
  const out = engine.sockHash({ maxEntries: 4 })
  const [a, b] = await Promise.all(sinkPorts.map((port) => engine.connect({ host: '127.0.0.1', port })))
  const front = engine.sockHash({ maxEntries: 4096 })
  if (resp !== undefined) {
    out.set(0, a).set(1, b)
    const verdicts = {
      key: (msg) => msg.redirect(out, fnv(msg.resp.key) & 1),
      bytes: (msg) => msg.redirect(out, msg.data[21] & 1),
      native: rules.hashRoute(out, rules.key.resp),
    }
    front.attach({ parser: parsers.resp(), verdict: verdicts[resp], peekBytes: FRAME })
  } else if (native) {
    out.set('A', a).set('B', b)
    front.attach({
      parser: parsers.lengthField({ lengthFieldLength: 4 }),
      verdict: rules.redirect(out, rules.key.bytes(4, 1)),
    })
  } else {
    out.set(0, a).set(1, b)
    sinksOf = () => out
    front.attach({ parser: parsers.lengthField({ lengthFieldLength: 4 }), verdict, peekBytes: FRAME })
  }
  const server = await engine.listen({ host: '127.0.0.1', port: 0, backlog: 1024 })
  server.on('connection', (sock) => front.set(sock.id, sock))
  return {
    port: server.address().port,
    extra: () => engine.stats(),
    close: () => engine.close(),
  }
}

async function nodeRouter(sinkPorts) {
  const targets = await Promise.all(
    sinkPorts.map(
      (port) =>
        new Promise((resolve, reject) => {
          const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s))
          s.setNoDelay(true)
          s.once('error', reject)
        }),
    ),
  )
  // The same verdict, over a reused view whose redirect() names the chosen target.
  const table = {}
  sinksOf = () => table
  const view = { data: Buffer.alloc(0), redirect: (_map, key) => key }
  const pending = [[], []]
  const conns = new Set()
  const server = net.createServer((s) => {
    conns.add(s)
    s.setNoDelay(true)
    let rest = null
    s.on('data', (chunk) => {
      const buf = rest === null ? chunk : Buffer.concat([rest, chunk])
      let off = 0
      while (buf.length - off >= 4) {
        const len = 4 + buf.readUInt32BE(off)
        if (buf.length - off < len) break
        view.data = buf.subarray(off, off + len)
        pending[verdict(view)].push(view.data)
        off += len
      }
      rest = off === buf.length ? null : buf.subarray(off)
      for (let t = 0; t < 2; t++) {
        const p = pending[t]
        if (p.length > 0) {
          targets[t].write(p.length === 1 ? p[0] : Buffer.concat(p))
          p.length = 0
        }
      }
    })
    s.on('error', () => {})
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', 1024, r))
  return {
    port: server.address().port,
    extra: () => undefined,
    close: async () => {
      for (const c of conns) c.destroy()
      for (const t of targets) t.destroy()
      await new Promise((r) => server.close(r))
    },
  }
}

async function run(name, make) {
  const child = fork(fileURLToPath(new URL('./verdict-load.mjs', import.meta.url)), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const next = () => new Promise((resolve) => child.once('message', resolve))
  const { sinks } = await next()
  const router = await make(sinks)
  child.send({ router: router.port, seconds: SECONDS, warmup: WARMUP })
  await next() // start
  const cpu0 = cpuSeconds()
  const s0 = router.extra()
  const res = await next() // stop
  const cpu = cpuSeconds() - cpu0
  const s1 = router.extra()
  await new Promise((r) => child.once('exit', r))
  await router.close()
  const msgs = res.frames
  const row = {
    router: name,
    'msgs/s': Math.round(msgs / res.seconds),
    'CPU-s per M msgs': +((cpu * 1e6) / Math.max(1, msgs)).toFixed(3),
    'router CPU %': Math.round((cpu / res.seconds) * 100),
    'load CPU %': Math.round(res.loadCpu * 100),
    'sink bytes/read': Math.round((msgs * FRAME) / Math.max(1, res.reads)),
    'p50 µs': Math.round(res.p50),
    'p99 µs': Math.round(res.p99),
  }
  if (s0 && s1) {
    const batches = s1.batches - s0.batches
    row['avg batch'] = batches > 0 ? +((s1.verdictMessages - s0.verdictMessages) / batches).toFixed(1) : '-'
    row['wakeups/s'] = Math.round((s1.wakeups - s0.wakeups) / res.seconds)
  }
  return row
}

const routers = {
  ts: ['sockmap, TS verdict', (p) => sockmapRouter(p, { maxMessages: 1024 })],
  ts1: ['sockmap, TS verdict, batch 1', (p) => sockmapRouter(p, { maxMessages: 1 })],
  inline: ['sockmap, TS verdict, inline', (p) => sockmapRouter(p, { maxMessages: 1024, drive: 'inline' })],
  node: ['node:net router', (p) => nodeRouter(p)],
  native: ['sockmap, native rule', (p) => sockmapRouter(p, { maxMessages: 1024, native: true })],
  resp: ['RESP, TS verdict on msg.resp.key', (p) => sockmapRouter(p, { maxMessages: 1024, resp: 'key' })],
  'resp-bytes': ['RESP, TS verdict on a byte', (p) => sockmapRouter(p, { maxMessages: 1024, resp: 'bytes' })],
  'resp-native': ['RESP, rules.hashRoute(key.resp)', (p) => sockmapRouter(p, { maxMessages: 1024, resp: 'native' })],
}
const RESP = process.env.E2E_PROTO === 'resp'
const rows = []
for (const key of (process.env.E2E_ROUTERS ?? (RESP ? 'resp,resp-bytes,resp-native' : 'ts,ts1,node,native')).split(
  ',',
)) {
  const [name, make] = routers[key]
  rows.push(await run(name, make))
}
console.log(
  `64-byte ${RESP ? 'RESP commands' : 'frames'}, ${process.env.E2E_CONNS ?? 16} client connections, ${SECONDS} s per router after ${WARMUP} s warm-up`,
)
console.table(rows)
