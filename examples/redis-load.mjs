// The demo's load client, in a worker thread (so that it does not share the JavaScript thread of the gateway it
// measures): CONNS connections, each sending one small GET or SET at a time (raw RESP over node:net), for DURATION
// ms; reports progress, then every latency and the error replies.
import net from 'node:net'
import { parentPort } from 'node:worker_threads'

const value = 'v'.repeat(32)

/** Length of the first complete RESP reply in `buf` (simple, error, integer or bulk string), or 0. */
function replyLength(buf) {
  const eol = buf.indexOf('\r\n')
  if (eol < 0) return 0
  if (buf[0] !== 0x24) return eol + 2 // '+', '-', ':'
  const n = Number(buf.subarray(1, eol).toString())
  if (n < 0) return eol + 2
  return buf.length >= eol + 2 + n + 2 ? eol + 2 + n + 2 : 0
}

function command(args) {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`
}

async function run({ port, durationMs, conns, keys }) {
  const latencies = []
  let ops = 0
  let errors = 0
  let firstError
  const end = Date.now() + durationMs
  const progress = setInterval(() => parentPort.postMessage({ type: 'progress', ops, errors }), 250)
  await Promise.all(
    Array.from(
      { length: conns },
      (_, c) =>
        new Promise((resolve) => {
          const sock = net.connect({ host: '127.0.0.1', port })
          sock.setNoDelay(true)
          let pending = Buffer.alloc(0)
          let sent = 0n
          let i = c
          const next = () => {
            if (Date.now() >= end) {
              sock.destroy()
              return
            }
            i = (i * 1103515245 + 12345) % 2147483648
            const key = `key:${(i >>> 4) % keys}`
            sent = process.hrtime.bigint()
            sock.write(command(i & 1 ? ['GET', key] : ['SET', key, value]))
          }
          sock.on('connect', next)
          sock.on('data', (d) => {
            pending = pending.length ? Buffer.concat([pending, d]) : d
            let n
            while ((n = replyLength(pending)) > 0) {
              if (pending[0] === 0x2d) {
                errors++
                firstError ??= pending.subarray(0, n - 2).toString()
              }
              pending = pending.subarray(n)
              latencies.push(Number(process.hrtime.bigint() - sent))
              ops++
              next()
            }
          })
          sock.on('error', (e) => {
            errors++
            firstError ??= e.message
          })
          sock.on('close', resolve)
        }),
    ),
  )
  clearInterval(progress)
  parentPort.postMessage({ type: 'done', ops, errors, firstError, latencies })
}

parentPort.on('message', (m) => {
  if (m.type === 'run') void run(m)
})
