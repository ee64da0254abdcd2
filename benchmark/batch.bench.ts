// The cost of a boundary crossing vs batch size: a trivial TypeScript verdict judging 64-byte length-prefixed frames
// that a closed-loop load (a child process, one frame in flight per connection) sends and gets back. For each
// `batch.maxMessages` it reports messages/s, the average batch, JS-thread wake-ups/s, the JS thread's busy time per
// message (event-loop utilisation) and the process CPU per message (I/O thread included). Batch size 1 is the
// "one crossing per message" baseline.
//
//   npm run bench:batch            (BATCH_CONNS=256 BATCH_SECONDS=2 to change the load)
import { spawn } from 'node:child_process'
import { resolve } from 'node:path'
import { performance } from 'node:perf_hooks'

import { Engine, Verdict } from '../src/index'

const conns = Number(process.env.BATCH_CONNS ?? 256)
const seconds = Number(process.env.BATCH_SECONDS ?? 2)

interface Row {
  maxMessages: number
  'msgs/s': number
  'avg batch': number
  'wakeups/s': number
  'JS ns/msg': number
  'CPU µs/msg': number
  'p50 µs': number
  'p99 µs': number
}

async function runOnce(maxMessages: number): Promise<Row> {
  const engine = new Engine({ batch: { maxMessages, maxDelayMicros: 50 } })
  const server = await engine.listen({ port: 0, backlog: 4096 })
  const back = engine.sockHash({ maxEntries: conns * 2 })
  const sources = engine.sockHash({ maxEntries: conns * 2 })
  // The trivial verdict: look at one byte of the payload, send the frame back where it came from.
  sources.attach({
    verdict: (msg) => (msg.data[4] === 0x61 ? msg.redirect(back, msg.socket) : Verdict.DROP),
    peekBytes: 64,
  })
  server.on('connection', (sock) => {
    back.set(sock.id, sock)
    sources.set(sock.id, sock)
  })
  const child = spawn(
    process.execPath,
    [resolve(__dirname, 'batch-load.mjs'), String(server.address().port), String(conns), String(seconds * 1000)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  // Measure the steady state: skip the connection ramp-up.
  await new Promise((r) => setTimeout(r, 300))
  const s0 = engine.stats()
  const cpu0 = process.cpuUsage()
  const elu0 = performance.eventLoopUtilization()
  const t0 = performance.now()
  await new Promise((r) => setTimeout(r, seconds * 1000 - 500))
  const dt = (performance.now() - t0) / 1000
  const elu = performance.eventLoopUtilization(elu0)
  const cpu = process.cpuUsage(cpu0)
  const s1 = engine.stats()
  await new Promise<void>((r) => child.once('exit', () => r()))
  await engine.close()
  const load = JSON.parse(out) as { done: number; p50: number; p99: number }
  const msgs = s1.verdictMessages - s0.verdictMessages
  const batches = s1.batches - s0.batches
  return {
    maxMessages,
    'msgs/s': Math.round(msgs / dt),
    'avg batch': +(msgs / Math.max(1, batches)).toFixed(1),
    'wakeups/s': Math.round((s1.wakeups - s0.wakeups) / dt),
    'JS ns/msg': Math.round((elu.active * 1e6) / Math.max(1, msgs)),
    'CPU µs/msg': +((cpu.user + cpu.system) / Math.max(1, msgs)).toFixed(2),
    'p50 µs': Math.round(load.p50),
    'p99 µs': Math.round(load.p99),
  }
}

async function main(): Promise<void> {
  const rows: Row[] = []
  for (const size of (process.env.BATCH_SIZES ?? '1,16,256,1024').split(',').map(Number)) rows.push(await runOnce(size))
  console.log(`TypeScript verdict, ${conns} connections × 1 frame in flight, ${seconds} s per row`)
  console.table(rows)
}

void main()
