// Load side of the gateway demo (plain JavaScript: it runs in a worker thread), run in a worker thread so that the main thread does nothing but route: two sinks
// that count frames and measure latency, and a client that sends 4-byte length-prefixed 64-byte frames.
//
// Frame payload (64 bytes): [0] route tag 'A' or 'B' · [1..9) send time (ns, BigUInt64) · [9..13) sequence · rest 0.
import { createServer, connect } from 'node:net'
import { parentPort } from 'node:worker_threads'

const FRAME_PAYLOAD = 64
const FRAME_LEN = 4 + FRAME_PAYLOAD
const WINDOW = 8192

/** A sink that counts frames and samples their latency into `stats`. */
function sink(stats) {
  return createServer((sock) => {
    let pending = Buffer.alloc(0)
    sock.on('data', (chunk) => {
      const now = process.hrtime.bigint()
      const buf = pending.length ? Buffer.concat([pending, chunk]) : chunk
      let off = 0
      while (buf.length - off >= 4) {
        const len = buf.readUInt32BE(off)
        if (buf.length - off < 4 + len) break
        stats.frames++
        // Sample latency of one frame in 64 to keep the sink cheap.
        if ((stats.frames & 63) === 0) stats.latenciesNs.push(Number(now - buf.readBigUInt64BE(off + 5)))
        off += 4 + len
      }
      pending = off === buf.length ? Buffer.alloc(0) : buf.subarray(off)
    })
  })
}

async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  if (addr === null || typeof addr === 'string') throw new Error('sink has no TCP address')
  return addr.port
}

/** Sends frames to `port` for `durationMs`, at most WINDOW frames ahead of what the sinks received. */
async function drive(port, durationMs, delivered) {
  const sock = connect(port, '127.0.0.1')
  sock.setNoDelay(true)
  await new Promise((resolve, reject) => {
    sock.once('connect', resolve)
    sock.once('error', reject)
  })
  const framesPerBurst = 256
  const burst = Buffer.alloc(FRAME_LEN * framesPerBurst)
  let seq = 0
  const deadline = Date.now() + durationMs
  while (Date.now() < deadline) {
    // Keep at most WINDOW frames in flight, so latency measures the routers, not an unbounded queue.
    while (seq - delivered() > WINDOW && Date.now() < deadline) await new Promise((r) => setImmediate(r))
    const now = process.hrtime.bigint()
    for (let i = 0; i < framesPerBurst; i++) {
      const off = i * FRAME_LEN
      burst.writeUInt32BE(FRAME_PAYLOAD, off)
      burst[off + 4] = seq % 3 === 0 ? 0x42 : 0x41 // one frame in three goes to B
      burst.writeBigUInt64BE(now, off + 5)
      burst.writeUInt32BE(seq >>> 0, off + 13)
      seq++
    }
    if (!sock.write(Buffer.from(burst))) await new Promise((resolve) => sock.once('drain', resolve))
  }
  await new Promise((resolve) => sock.end(resolve))
  return seq
}

if (parentPort !== null) {
  const port = parentPort
  const sinkA = { frames: 0, latenciesNs: [] }
  const sinkB = { frames: 0, latenciesNs: [] }
  const servers = [sink(sinkA), sink(sinkB)]
  void (async () => {
    const ports = await Promise.all(servers.map(listen))
    port.postMessage({ type: 'sinks', a: ports[0], b: ports[1] })
    port.on('message', async (msg) => {
      if (msg.type === 'run') {
        sinkA.frames = sinkB.frames = 0
        sinkA.latenciesNs = []
        sinkB.latenciesNs = []
        const timer = setInterval(() => port.postMessage({ type: 'progress', a: sinkA.frames, b: sinkB.frames }), 250)
        const sent = await drive(msg.port, msg.durationMs, () => sinkA.frames + sinkB.frames)
        // Let the last frames arrive (bounded wait).
        const settle = Date.now() + 2000
        while (sinkA.frames + sinkB.frames < sent && Date.now() < settle) await new Promise((r) => setTimeout(r, 10))
        clearInterval(timer)
        port.postMessage({
          type: 'done',
          sent,
          a: sinkA.frames,
          b: sinkB.frames,
          latenciesNs: [...sinkA.latenciesNs, ...sinkB.latenciesNs],
        })
      } else if (msg.type === 'stop') {
        for (const s of servers) s.close()
        port.close()
      }
    })
  })()
}
