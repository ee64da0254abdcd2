// Closed-loop load for benchmark/batch.bench.ts, run as a child process so that it does not share the engine's
// JavaScript thread: `node batch-load.mjs <port> <connections> <durationMs>`. Each connection keeps one 64-byte
// length-prefixed frame in flight and sends the next when the previous one comes back. Prints one JSON line.
import net from 'node:net'

const [port, conns, durationMs] = process.argv.slice(2).map(Number)
const frame = Buffer.alloc(64, 0x61)
frame.writeUInt32BE(60, 0)
const lat = []
let done = 0
let stop = false

function client() {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.setNoDelay(true)
      let have = 0
      let sent = process.hrtime.bigint()
      s.on('data', (d) => {
        have += d.length
        while (have >= 64) {
          have -= 64
          done++
          if (lat.length < 200_000) lat.push(Number(process.hrtime.bigint() - sent) / 1000)
          if (stop) {
            s.destroy()
            return resolve()
          }
          sent = process.hrtime.bigint()
          s.write(frame)
        }
      })
      s.write(frame)
    })
    s.on('error', () => resolve())
    s.on('close', () => resolve())
  })
}

const all = []
for (let i = 0; i < conns; i++) all.push(client())
setTimeout(() => {
  stop = true
  setTimeout(() => {
    lat.sort((a, b) => a - b)
    const p = (q) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] ?? 0
    console.log(JSON.stringify({ done, p50: p(0.5), p99: p(0.99) }))
    process.exit(0)
  }, 200)
}, durationMs)
