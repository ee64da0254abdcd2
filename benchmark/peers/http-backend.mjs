// An HTTP/1 backend for the peer benchmarks: answers every request with a 12-byte body, keep-alive; prints `ready`.
import http from 'node:http'

const port = Number(process.argv[2])
const body = Buffer.from('hello world\n')
http
  .createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length })
      res.end(body)
    })
  })
  .listen(port, '127.0.0.1', () => console.log('ready'))
