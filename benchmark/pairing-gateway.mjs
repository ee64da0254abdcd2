// A minimal Redis gateway through request/response pairing: clients' RESP commands go, by a native rule, to a few
// shared connections to one Redis server; each client gets its replies in its request order. One I/O thread, so
// every client and upstream connection share it (pairing is shard-local).
//
//   node benchmark/pairing-gateway.mjs --upstream 127.0.0.1:6379 [--conns 1] [--port 0]
//
// Needs the built package (`npm run build`). Prints `listening <port>` once it accepts connections; stops on
// SIGINT/SIGTERM.
import { parseArgs } from 'node:util'

import { Engine, parsers, rules } from '../dist/index.mjs'

const { values } = parseArgs({
  options: {
    upstream: { type: 'string', default: '127.0.0.1:6379' },
    conns: { type: 'string', default: '1' },
    port: { type: 'string', default: '0' },
  },
})
const [host, port] = values.upstream.split(':')
const engine = new Engine({ shards: 1 })
engine.on('error', (err) => console.error(`pairing-gateway: ${err.message}`))
const ups = engine.sockHash({ maxEntries: 64 })
ups.attach({ parser: parsers.resp(), verdict: rules.reply() })
const clients = engine.sockHash({ maxEntries: 1 << 16 })
clients.attach({ parser: parsers.resp(), verdict: rules.hashRoute(ups, rules.key.resp), requests: {} })
for (let i = 0; i < Number(values.conns); i++) ups.set(i, await engine.connect({ host, port: Number(port) }))
const server = await engine.listen({ host: '127.0.0.1', port: Number(values.port), backlog: 4096 })
server.on('connection', (client) => {
  clients.set(client.id, client)
})
const stop = () => void engine.close().then(() => process.exit(0))
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
console.log(`listening ${server.address().port}`)
