// A UDP proxy written the usual Node way: one `node:dgram` socket faces the clients, and each client address gets its
// own dgram socket connected to the upstream, whose replies go back to that client. A client's socket is closed
// after --idle-ms without a datagram either way.
//
//   node benchmark/udp/node-proxy.mjs --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--idle-ms MS]
//
// Prints `ready` once bound; stops on SIGTERM, SIGINT or end of stdin.
import dgram from 'node:dgram'
import { exitOnStop, proxyArgs } from '../baselines/cli.mjs'

const args = proxyArgs('udp', { 'idle-ms': '30000' })
const idleMs = Number(args['idle-ms'])
if (!(idleMs > 0)) throw new RangeError(`--idle-ms must be a positive number, got ${args['idle-ms']}`)

const front = dgram.createSocket('udp4')
/** Client "address:port" -> { up, last, queue } (queue: datagrams that arrived before `up` connected). */
const sessions = new Map()

function session(rinfo) {
  const key = `${rinfo.address}:${rinfo.port}`
  let s = sessions.get(key)
  if (s) return s
  const up = dgram.createSocket('udp4')
  s = { up, last: Date.now(), queue: [] }
  sessions.set(key, s)
  up.on('message', (reply) => {
    s.last = Date.now()
    front.send(reply, rinfo.port, rinfo.address)
  })
  up.on('error', (err) => {
    console.error(`node-udp-proxy: upstream of ${key}: ${err.message}`)
    close(key, s)
  })
  up.connect(args.upstream.port, args.upstream.host, () => {
    for (const m of s.queue) up.send(m)
    s.queue = null
  })
  return s
}

function close(key, s) {
  sessions.delete(key)
  s.up.close()
}

front.on('message', (msg, rinfo) => {
  const s = session(rinfo)
  s.last = Date.now()
  if (s.queue) s.queue.push(msg)
  else s.up.send(msg)
})
front.on('error', (err) => {
  console.error(`node-udp-proxy: ${err.message}`)
  process.exit(1)
})
setInterval(
  () => {
    const stale = Date.now() - idleMs
    for (const [key, s] of sessions) if (s.last < stale) close(key, s)
  },
  Math.min(idleMs, 1000),
).unref()

exitOnStop()
front.bind(args.listen.port, args.listen.host, () => process.stdout.write('ready\n'))
