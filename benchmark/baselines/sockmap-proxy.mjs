// A 1:1 proxy through sockmap's public TypeScript API, with the same CLI and signals as the other baselines:
// each accepted connection gets an upstream connection on the same I/O thread, the two are stored in a SockHash
// under each other's ids, and every message read (no parser: each read is one message) is redirected to the other.
// TCP or Unix stream sockets on either side (`unix:PATH`: engine.listen({ path }), engine.connect({ path })).
//
//   node benchmark/baselines/sockmap-proxy.mjs --listen 127.0.0.1:PORT|unix:PATH --upstream 127.0.0.1:PORT|unix:PATH
//     --mode native|ts          native: rules.redirect(peers, rules.key.socket); ts: the same as a TypeScript verdict
//     [--parser none|length]    length: cut 4-byte big-endian length-prefixed frames first (default: none)
//     [--drive threads|inline]  who runs the I/O loop (default: threads)
//     [--max-delay MICROS]      batch.maxDelayMicros (default: the engine's)
//
// Needs the built package (`npm run build`). Prints `ready` once listening.
import { Engine, parsers, rules } from '../../dist/index.mjs'
import { exitOnStop, proxyArgs } from './cli.mjs'

const args = proxyArgs('native', { drive: 'threads', 'max-delay': '', parser: 'none' })
if (args.mode !== 'native' && args.mode !== 'ts') throw new RangeError(`--mode must be native or ts, got ${args.mode}`)
if (args.parser !== 'none' && args.parser !== 'length')
  throw new RangeError(`--parser must be none or length, got ${args.parser}`)
const batch = args['max-delay'] === '' ? {} : { maxDelayMicros: Number(args['max-delay']) }
const engine = new Engine({ drive: args.drive, batch })
const peers = engine.sockHash({ maxEntries: 1 << 16 })
peers.attach({
  ...(args.parser === 'length' ? { parser: parsers.lengthField({ lengthFieldLength: 4 }) } : {}),
  verdict: args.mode === 'native' ? rules.redirect(peers, rules.key.socket) : (msg) => msg.redirect(peers, msg.socket),
})
engine.on('error', (err) => console.error(`sockmap-proxy: ${err.message}`))

exitOnStop()
const server = await engine.listen({ ...args.listen, backlog: 4096 })
server.on('connection', async (client) => {
  try {
    const up = await engine.connect({ ...args.upstream, near: client })
    peers.set(client.id, up).set(up.id, client)
    client.on('close', () => up.destroy())
    up.on('close', () => client.destroy())
    client.resume()
    up.resume()
  } catch (err) {
    console.error(`sockmap-proxy: upstream: ${err.message}`)
    client.destroy()
  }
})
process.stdout.write('ready\n')
