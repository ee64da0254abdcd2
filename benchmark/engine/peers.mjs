// Peers shared by the benchmarks: HAProxy in TCP mode with one thread, started from a generated configuration and
// awaited until it listens; nginx's stream UDP proxy with one worker, from a private prefix; and redis-server
// without persistence.
import { execFileSync } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Proc, freePort, privateDir, waitListen } from './procs.mjs'

/** True when `cmd` is on the PATH. */
export function have(cmd) {
  try {
    execFileSync('bash', ['-c', `command -v ${cmd}`])
    return true
  } catch {
    return false
  }
}

/** HAProxy TCP mode, nbthread 1, no logging, one server. */
export function haproxyConfig(listen, upstream, maxconn) {
  return `global
    nbthread 1
    maxconn ${maxconn}
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend fe
    bind 127.0.0.1:${listen}
    maxconn ${maxconn}
    default_backend be
backend be
    server s1 127.0.0.1:${upstream} maxconn ${maxconn}
`
}

let cfgSeq = 0

/** A temporary file for a generated peer configuration. */
export function configFile(name, text) {
  const file = path.join(tmpdir(), `sockmap-bench-${name}-${process.pid}-${cfgSeq++}`)
  writeFileSync(file, text)
  return file
}

/** Starts HAProxy from `listen` to `upstream` and resolves once it listens. */
export async function startHaproxy(listen, upstream, { pin = false, maxconn = 2000 } = {}) {
  const file = configFile('haproxy.cfg', haproxyConfig(listen, upstream, maxconn))
  const p = new Proc('haproxy', 'haproxy', ['-db', '-f', file], { pin })
  await waitListen(listen).catch(async (e) => {
    await p.stop()
    throw new Error(`${e.message} ${p.stderr}`)
  })
  return p
}

/** Where Debian's libnginx-mod-stream installs nginx's stream module. */
export const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so'

/**
 * nginx's stream UDP proxy from 127.0.0.1:`listen` to 127.0.0.1:`upstream`: one worker, no daemon, errors to stderr,
 * its pid file in `prefix`; `proxy_responses 1` (one reply per datagram, nginx's session model).
 */
export function nginxUdpConfig(listen, upstream, prefix) {
  return `load_module ${NGINX_STREAM_MODULE};
daemon off;
master_process on;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log stderr warn;
events {
    worker_connections 8192;
}
stream {
    server {
        listen 127.0.0.1:${listen} udp;
        proxy_pass 127.0.0.1:${upstream};
        proxy_responses 1;
        proxy_timeout 30s;
    }
}
`
}

/** Why nginx's UDP proxy cannot run here, or null. */
export function nginxMissing() {
  if (!have('nginx')) return 'n/a: nginx not installed'
  if (!existsSync(NGINX_STREAM_MODULE)) return 'n/a: libnginx-mod-stream not installed'
  return null
}

/** Starts nginx's stream UDP proxy (see {@link nginxUdpConfig}) in a fresh prefix and resolves once it is bound. */
export async function startNginxUdp(listen, upstream, { pin = false } = {}) {
  const prefix = privateDir('nginx')
  const conf = path.join(prefix, 'nginx.conf')
  writeFileSync(conf, nginxUdpConfig(listen, upstream, prefix))
  const p = new Proc('nginx', 'nginx', ['-p', prefix, '-e', 'stderr', '-c', conf], { pin })
  await waitListen(listen, 10000, { udp: true }).catch(async (e) => {
    await p.stopTree()
    throw new Error(`${e.message} ${p.stderr}`)
  })
  return p
}

/** A redis-server on a free loopback port, without persistence, awaited until it listens: { port, proc }. */
export async function startRedis() {
  const port = await freePort()
  const proc = new Proc('redis-server', 'redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--protected-mode',
    'no',
    '--daemonize',
    'no',
    '--logfile',
    '',
    '--loglevel',
    'warning',
  ])
  await waitListen(port)
  return { port, proc }
}
