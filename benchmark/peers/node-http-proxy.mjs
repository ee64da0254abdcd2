// The plain Node HTTP proxy of the peer benchmarks: `http-proxy` (npm) with a keep-alive agent; prints `ready`.
import http from 'node:http'

import httpProxy from 'http-proxy'

const [listen, upstream] = process.argv.slice(2).map(Number)
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${upstream}`, agent })
proxy.on('error', (_err, _req, res) => {
  res.writeHead?.(502)
  res.end?.()
})
http.createServer((req, res) => proxy.web(req, res)).listen(listen, '127.0.0.1', () => console.log('ready'))
