// Test certificates, made with `openssl` at test time (ECDSA P-256) in a temporary directory, once per process:
// a CA; `localhost` (SANs localhost, 127.0.0.1) and `b.test` signed by it; a client certificate signed by it; and a
// self-signed `localhost` from another key, which no client trusts (the wrong certificate).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** One certificate and its key, as PEM strings, with their files (for `openssl s_client`/`s_server`). */
export interface TestCert {
  cert: string
  key: string
  certFile: string
  keyFile: string
}

/** Everything the TLS tests use. */
export interface TestPki {
  dir: string
  ca: string
  caFile: string
  localhost: TestCert
  other: TestCert
  client: TestCert
  wrong: TestCert
}

let made: TestPki | undefined

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
}

function leaf(dir: string, name: string, subject: string, ext: string): TestCert {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.ec.pem`])
  openssl(dir, ['pkcs8', '-topk8', '-nocrypt', '-in', `${name}.ec.pem`, '-out', `${name}.key`])
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`])
  writeFileSync(join(dir, `${name}.ext`), ext)
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '30',
    '-sha256',
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.pem`,
  ])
  return read(dir, name)
}

function read(dir: string, name: string): TestCert {
  const certFile = join(dir, `${name}.pem`)
  const keyFile = join(dir, `${name}.key`)
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile }
}

/** Whether `openssl` can be run. */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' })
    return true
  } catch {
    return false
  }
}

/** The test PKI (made on first use). */
export function pki(): TestPki {
  if (made) return made
  const dir = mkdtempSync(join(tmpdir(), 'sockmap-tls-'))
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30', '-sha256']
  openssl(dir, ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=sockmap test CA'])
  const server = 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
  const localhost = leaf(dir, 'localhost', '/CN=localhost', server)
  const other = leaf(dir, 'other', '/CN=b.test', 'subjectAltName=DNS:b.test\nextendedKeyUsage=serverAuth\n')
  const client = leaf(dir, 'client', '/CN=sockmap client', 'extendedKeyUsage=clientAuth\n')
  openssl(dir, [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'wrong.key',
    '-out',
    'wrong.pem',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ])
  const wrong = read(dir, 'wrong')
  const caFile = join(dir, 'ca.pem')
  made = { dir, ca: readFileSync(caFile, 'utf8'), caFile, localhost, other, client, wrong }
  return made
}
