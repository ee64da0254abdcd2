// The sockmap demo: a gateway that routes framed messages by content, next to the same routing done by a plain
// Node `net` router. Everything runs on loopback; nothing needs to be installed beyond the clone.
//
//   load client ──frames──▶ gateway ──'A' frames──▶ sink A
//                                   └─'B' frames──▶ sink B
//
// The sockmap gateway frames the stream natively (4-byte length prefix), and a TypeScript verdict, called by the
// engine in batches, picks the sink by the frame's first payload byte. The Node router does the same in JS.
import { createServer, connect, type Socket as NetSocket } from 'node:net'
import { Worker } from 'node:worker_threads'
import { join } from 'node:path'

import { Engine, parsers, type StreamMessage, type Verdict } from '../src/index'

const DURATION_MS = Number(process.env.DEMO_DURATION_MS ?? 3000)

interface RunResult {
  name: string
  sent: number
  a: number
  b: number
  seconds: number
  latenciesNs: number[]
  verdicts?: string
  batches?: number
}

type LoadMessage =
  | { type: 'sinks'; a: number; b: number }
  | { type: 'progress'; a: number; b: number }
  | { type: 'done'; sent: number; a: number; b: number; latenciesNs: number[] }

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
}

function startLoad(): Promise<{ worker: Worker; sinks: { a: number; b: number } }> {
  const worker = new Worker(join(__dirname, 'gateway-load.mjs'))
  return new Promise((resolve, reject) => {
    worker.once('error', reject)
    worker.once('message', (m: LoadMessage) => {
      if (m.type === 'sinks') resolve({ worker, sinks: { a: m.a, b: m.b } })
    })
  })
}

function runLoad(worker: Worker, name: string, port: number): Promise<RunResult> {
  const started = Date.now()
  let ticks = 0
  return new Promise((resolve) => {
    const onMessage = (m: LoadMessage): void => {
      if (m.type === 'progress') {
        const rate = ((m.a + m.b) / ((Date.now() - started) / 1000) / 1e6).toFixed(2)
        const line = `  ${name.padEnd(24)} A ${String(m.a).padStart(10)}  B ${String(m.b).padStart(10)}  ${rate} M msg/s`
        if (process.stdout.isTTY) process.stdout.write(`\r${line} `)
        else if (++ticks % 4 === 0) console.log(line)
      } else if (m.type === 'done') {
        worker.off('message', onMessage)
        if (process.stdout.isTTY) process.stdout.write('\n')
        resolve({ name, ...m, seconds: (Date.now() - started) / 1000 })
      }
    }
    worker.on('message', onMessage)
    worker.postMessage({ type: 'run', port, durationMs: DURATION_MS })
  })
}

/** The sockmap gateway: native framing, TypeScript verdict in batches, native redirect to the chosen sink. */
async function sockmapGateway(sinks: { a: number; b: number }): Promise<{ port: number; engine: Engine }> {
  const engine = new Engine({ batch: { maxMessages: 1024, maxDelayMicros: 50 } })
  const upstreams = engine.sockHash({ maxEntries: 2 })
  upstreams.set('a', await engine.connect({ host: '127.0.0.1', port: sinks.a }))
  upstreams.set('b', await engine.connect({ host: '127.0.0.1', port: sinks.b }))

  const clients = engine.sockMap({ maxEntries: 64 })
  clients.attach({
    parser: parsers.lengthField({ lengthFieldLength: 4 }),
    verdict: (msg: StreamMessage): Verdict => msg.redirect(upstreams, msg.data[4] === 0x42 ? 'b' : 'a'),
    peekBytes: 16,
  })
  const server = await engine.listen({ host: '127.0.0.1', port: 0 })
  let next = 0
  server.on('connection', (sock) => clients.set(next++ % 64, sock))
  return { port: server.address().port, engine }
}

/** The same routing in plain Node: parse each frame, decide in JS, coalesce the writes per sink. */
async function nodeRouter(sinks: { a: number; b: number }): Promise<{ port: number; close: () => void }> {
  const open = (port: number): Promise<NetSocket> =>
    new Promise((resolve) => {
      const s = connect(port, '127.0.0.1', () => resolve(s))
      s.setNoDelay(true)
    })
  const [a, b] = await Promise.all([open(sinks.a), open(sinks.b)])
  const server = createServer((client) => {
    let pending: Buffer = Buffer.alloc(0)
    client.on('data', (chunk: Buffer) => {
      const buf = pending.length ? Buffer.concat([pending, chunk]) : chunk
      const toA: Buffer[] = []
      const toB: Buffer[] = []
      let off = 0
      while (buf.length - off >= 4) {
        const len = buf.readUInt32BE(off)
        if (buf.length - off < 4 + len) break
        const frame = buf.subarray(off, off + 4 + len)
        ;(frame[4] === 0x42 ? toB : toA).push(frame)
        off += 4 + len
      }
      pending = off === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(off))
      if (toA.length) a.write(Buffer.concat(toA))
      if (toB.length) b.write(Buffer.concat(toB))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  if (addr === null || typeof addr === 'string') throw new Error('router has no TCP address')
  return {
    port: addr.port,
    close: () => {
      server.close()
      a.destroy()
      b.destroy()
    },
  }
}

async function main(): Promise<void> {
  console.log(`sockmap gateway demo: 64-byte frames routed by content to two sinks, ${DURATION_MS / 1000} s per run\n`)
  const { worker, sinks } = await startLoad()
  const results: RunResult[] = []

  const gw = await sockmapGateway(sinks)
  const r1 = await runLoad(worker, 'sockmap + TS verdict', gw.port)
  const s = gw.engine.stats()
  if (process.env.DEMO_DEBUG) console.log(JSON.stringify(s, null, 1))
  results.push({
    ...r1,
    verdicts: `${s.totals.redirected} redirected, ${s.totals.dropped} dropped`,
    batches: s.batches,
  })
  await gw.engine.close()

  const router = await nodeRouter(sinks)
  results.push({ ...(await runLoad(worker, 'node:net router', router.port)), verdicts: 'n/a (JS)' })
  router.close()

  worker.postMessage({ type: 'stop' })
  await worker.terminate()

  console.log()
  console.table(
    results.map((r) => {
      const lat = [...r.latenciesNs].sort((x, y) => x - y)
      return {
        router: r.name,
        'msg/s': Math.round((r.a + r.b) / r.seconds).toLocaleString('en'),
        'p50 µs': (percentile(lat, 50) / 1e3).toFixed(0),
        'p99 µs': (percentile(lat, 99) / 1e3).toFixed(0),
        'to A / to B': `${r.a} / ${r.b}`,
        lost: r.sent - r.a - r.b,
        verdicts: r.verdicts ?? '',
        'batches crossed': r.batches ?? '',
      }
    }),
  )
  const lost = results.reduce((n, r) => n + (r.sent - r.a - r.b), 0)
  if (lost !== 0) {
    console.error(`${lost} messages were not delivered`)
    process.exitCode = 1
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
