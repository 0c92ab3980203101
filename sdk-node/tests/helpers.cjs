'use strict'
// Shared by the tests: the package under test, one real collector on its embedded PostgreSQL,
// and reading back what it stored (psql against the cluster, URL from `database-url`).
//
// ci.sh starts one collector for the whole run and passes it in AGENTTALLY_TEST_ENDPOINT,
// AGENTTALLY_TEST_KEY and AGENTTALLY_TEST_DATA_DIR; without them (one file run by hand) the
// first `collector()` starts its own, stopped when the test process exits.

const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')

/** The installed package (ci.sh: the `npm pack` tarball installed in a scratch project). */
const PACKAGE = process.env.AGENTTALLY_PACKAGE || path.resolve(__dirname, '..')

function collectorBinary() {
  if (process.env.AGENTTALLY_COLLECTOR_BIN) return process.env.AGENTTALLY_COLLECTOR_BIN
  const target = process.env.CARGO_TARGET_DIR || path.resolve(__dirname, '..', '..', 'target')
  return path.join(target, 'debug', 'agenttally-collector')
}

let started = null

/** `{ endpoint, apiKey, dataDir, binary }` of the collector. */
async function collector() {
  const binary = collectorBinary()
  if (process.env.AGENTTALLY_TEST_ENDPOINT) {
    return {
      endpoint: process.env.AGENTTALLY_TEST_ENDPOINT,
      apiKey: process.env.AGENTTALLY_TEST_KEY,
      dataDir: process.env.AGENTTALLY_TEST_DATA_DIR,
      binary,
    }
  }
  if (started) return started
  started = (async () => {
    // Under /tmp and world-traversable: as root the cluster runs as the `postgres` user.
    const dataDir = fs.mkdtempSync(path.join('/tmp', 'agenttally-node-'))
    fs.chmodSync(dataDir, 0o755)
    const proc = spawn(
      binary,
      ['serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--no-fsync'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    process.on('exit', () => {
      proc.kill('SIGTERM')
    })
    const addr = await new Promise((resolve, reject) => {
      let log = ''
      const timer = setTimeout(() => reject(new Error(`collector did not start:\n${log}`)), 180_000)
      proc.stdout.on('data', (chunk) => {
        log += chunk
        const m = /listening on (\S+)/.exec(log)
        if (m) {
          clearTimeout(timer)
          resolve(m[1])
        }
      })
      proc.stderr.on('data', (chunk) => {
        log += chunk
      })
      proc.on('exit', (code) => reject(new Error(`collector exited (${code}):\n${log}`)))
      proc.on('error', reject)
    })
    proc.stdout.resume()
    proc.stderr.resume()
    proc.unref()
    proc.stdout.unref?.()
    proc.stderr.unref?.()
    const apiKey = execFileSync(
      binary,
      ['keys', 'create', '--platform', '--scope', 'ingest', '--data-dir', dataDir],
      { encoding: 'utf8', timeout: 120_000 },
    ).trim()
    return { endpoint: `http://${addr}`, apiKey, dataDir, binary }
  })()
  return started
}

const urls = new Map()

/** Rows of `sql` (arrays of column texts), run as the cluster's superuser. */
async function query(sql) {
  const c = await collector()
  if (!urls.has(c.dataDir)) {
    const url = execFileSync(c.binary, ['database-url', '--data-dir', c.dataDir], {
      encoding: 'utf8',
      timeout: 60_000,
    }).trim()
    urls.set(c.dataDir, url)
  }
  const out = execFileSync(
    'psql',
    [urls.get(c.dataDir), '-X', '-q', '-A', '-t', '-F', '\t', '-c', sql],
    {
      encoding: 'utf8',
      timeout: 60_000,
      maxBuffer: 256 << 20,
    },
  )
  return out
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'))
}

/** A tenant of its own per test, so counts are exact. */
function tenant() {
  return `node-${crypto.randomBytes(6).toString('hex')}`
}

/** A local port nothing listens on. */
async function closedPort() {
  const net = require('node:net')
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

module.exports = { PACKAGE, collector, query, tenant, closedPort }
