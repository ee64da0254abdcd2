// A UDP proxy through sockmap's public TypeScript API: a bound UDP socket creates a session per client address
// (`engine.bindUdp({ sessions })`), each session is paired with an upstream socket (`engine.connectUdp`), and a native
// rule redirects every datagram to its partner (`rules.redirect(peers, rules.key.socket)`), as the TCP proxy
// `benchmark/baselines/sockmap-proxy.mjs` does with connections.
//
//   node benchmark/udp/sockmap-proxy.mjs --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--idle-ms MS]
//     [--backend auto|epoll|io_uring]   the engine's backend (default: the engine's, or SOCKMAP_BACKEND)
//
// Needs the built package (`npm run build`) with UDP sockets; exits with status 3 and a message when this build
// has no `engine.bindUdp`. Prints `ready` once bound.
import { Engine, rules } from '../../dist/index.mjs'
import { exitOnStop, proxyArgs } from '../baselines/cli.mjs'

const args = proxyArgs('native', { 'idle-ms': '30000', backend: '' })
const idleTimeoutMs = Number(args['idle-ms'])
if (!(idleTimeoutMs > 0)) throw new RangeError(`--idle-ms must be a positive number, got ${args['idle-ms']}`)
if (typeof Engine.prototype.bindUdp !== 'function') {
  console.error('sockmap-udp-proxy: this build of sockmap has no engine.bindUdp (UDP sockets)')
  process.exit(3)
}

const engine = new Engine(args.backend === '' ? {} : { backend: args.backend })
const peers = engine.sockHash({ maxEntries: 1 << 16 })
peers.attach({ verdict: rules.redirect(peers, rules.key.socket) })
engine.on('error', (err) => console.error(`sockmap-udp-proxy: ${err.message}`))

exitOnStop()
const front = await engine.bindUdp({ ...args.listen, sessions: { idleTimeoutMs } })
front.on('session', async (session) => {
  try {
    const up = await engine.connectUdp({ ...args.upstream, near: session })
    peers.set(session.id, up).set(up.id, session)
    engine.pair(session, up) // an idle session closes its upstream too
  } catch (err) {
    console.error(`sockmap-udp-proxy: upstream: ${err.message}`)
    session.destroy()
  }
})
process.stdout.write('ready\n')
