// Load side of benchmark/verdict-e2e.mjs, a child process with an IPC channel: two sinks that count frames and sample
// latency, and clients that send 64-byte frames (4-byte big-endian length 60, then the payload) to a router.
//
// Frame payload: [0] route tag 'A' or 'B' · [1] 1 on a timestamped frame · [4..12) send time (ns, BigUInt64LE).
// Clients send chunks of CHUNK frames (one timestamped frame, then CHUNK-1 frames alternating A/B) and keep at most
// WINDOW frames in flight in all (sent and not yet counted by a sink), so queues stay bounded and latency means
// something. With E2E_PROTO=resp every frame is instead a 64-byte RESP `SET key:XX <32-byte value>` (the flag at
// byte 30, the send time at [38..46), keys cycling over 256 values). Protocol: the child sends { sinks: [port, port] }; the parent answers { router: port, seconds, warmup };
// the child sends { phase: 'start' } after the warm-up, then { phase: 'stop', frames, p50, p99 } and exits.
import net from 'node:net'

const FRAME = 64
const CHUNK = Number(process.env.E2E_CHUNK ?? 256)
const CONNS = Number(process.env.E2E_CONNS ?? 16)
const WINDOW = Number(process.env.E2E_WINDOW ?? CONNS * 16 * CHUNK)
const RESP = process.env.E2E_PROTO === 'resp'
/** Where a frame says it is timestamped, and where the send time is. */
const FLAG_AT = RESP ? 30 : 5
const STAMP_AT = RESP ? 38 : 8

let received = 0
let sent = 0
const lat = []
let measuring = false
let sinkReads = 0

function frames(n, first) {
  const b = Buffer.alloc(n * FRAME)
  for (let i = 0; i < n; i++) {
    if (RESP) {
      const key = ((first + i) % 256).toString(16).padStart(2, '0')
      b.write(`*3\r\n$3\r\nSET\r\n$6\r\nkey:${key}\r\n$32\r\n`, i * FRAME, 'latin1')
      b.write('\r\n', i * FRAME + FRAME - 2, 'latin1')
    } else {
      b.writeUInt32BE(FRAME - 4, i * FRAME)
      b[i * FRAME + 4] = (first + i) % 2 === 0 ? 0x41 : 0x42
    }
  }
  return b
}

function sink() {
  return net.createServer((s) => {
    let pos = 0 // bytes of this connection so far, modulo FRAME
    s.on('data', (d) => {
      sinkReads++
      const now = process.hrtime.bigint()
      let at = (FRAME - pos) % FRAME
      pos = (pos + d.length) % FRAME
      for (; at + FRAME <= d.length; at += FRAME) {
        if (d[at + FLAG_AT] === 1 && measuring && lat.length < 1_000_000) {
          lat.push(Number(now - d.readBigUInt64LE(at + STAMP_AT)))
        }
      }
      count(d.length)
    })
  })
}

let carry = 0
function count(bytes) {
  carry += bytes
  const n = Math.floor(carry / FRAME)
  carry -= n * FRAME
  received += n
  pump()
}

const clients = []
let next = 0
const bulk = frames(CHUNK - 1, 1)
function pump() {
  while (clients.length > 0 && sent - received + CHUNK <= WINDOW) {
    const c = clients[next]
    next = (next + 1) % clients.length
    const stamp = frames(1, 0)
    stamp[FLAG_AT] = 1
    stamp.writeBigUInt64LE(process.hrtime.bigint(), STAMP_AT)
    c.cork()
    c.write(stamp)
    c.write(bulk)
    c.uncork()
    sent += CHUNK
  }
}

async function listen(srv) {
  await new Promise((r) => srv.listen(0, '127.0.0.1', r))
  return srv.address().port
}

const sinks = [sink(), sink()]
const ports = await Promise.all(sinks.map(listen))
process.send({ sinks: ports })
process.once('message', async ({ router, seconds, warmup }) => {
  for (let i = 0; i < CONNS; i++) {
    const c = net.connect({ host: '127.0.0.1', port: router })
    c.setNoDelay(true)
    await new Promise((r, j) => c.once('connect', r).once('error', j))
    clients.push(c)
  }
  pump()
  await new Promise((r) => setTimeout(r, warmup * 1000))
  measuring = true
  const r0 = received
  const reads0 = sinkReads
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  process.send({ phase: 'start' })
  await new Promise((r) => setTimeout(r, seconds * 1000))
  const frames = received - r0
  const dt = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  const loadCpu = (cpu.user + cpu.system) / 1e6 / dt
  const reads = sinkReads - reads0
  measuring = false
  lat.sort((a, b) => a - b)
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] / 1000 : 0)
  process.send({ phase: 'stop', frames, seconds: dt, p50: q(0.5), p99: q(0.99), loadCpu, reads }, () => process.exit(0))
})
