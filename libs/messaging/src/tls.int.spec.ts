/**
 * TLS to NATS with a private CA and mutual TLS: a private nats-server requiring TLS and verifying
 * client certificates, certificates made with openssl for the test.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectNats } from './connect';
import { PrivateNatsServer } from './test-support';

jest.setTimeout(60_000);

let dir: string;
let nats: PrivateNatsServer;
const f = (name: string) => join(dir, name);

/** A CA, a certificate it signs (`name`, with the SAN given), and the key. */
function issue(name: string, san: string | undefined): void {
  execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`], { stdio: 'ignore' });
  if (san !== undefined) writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\n`);
  execFileSync('openssl', ['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-out', f(`${name}.pem`), ...(san === undefined ? [] : ['-extfile', f(`${name}.ext`)])], { stdio: 'ignore' });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleet-tls-'));
  execFileSync('openssl', ['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=fleet test CA'], { stdio: 'ignore' });
  issue('server', 'DNS:localhost,IP:127.0.0.1');
  issue('client', undefined);
  nats = await PrivateNatsServer.start({
    include: `tls {\n  cert_file: ${JSON.stringify(f('server.pem'))}\n  key_file: ${JSON.stringify(f('server.key'))}\n  ca_file: ${JSON.stringify(f('ca.pem'))}\n  verify: true\n}\n`,
  });
});

afterAll(async () => {
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const base = () => ({ servers: nats.url, name: 'tls-test', waitOnFirstConnect: false });

describe('TLS to NATS', () => {
  it('connects with the private CA and a client certificate, and carries requests', async () => {
    const nc = await connectNats({ ...base(), tls: { caFile: f('ca.pem'), certFile: f('client.pem'), keyFile: f('client.key') } });
    try {
      nc.subscribe('tls.echo', { callback: (_e, m) => void m.respond(m.data) });
      const r = await nc.request('tls.echo', 'over tls', { timeout: 5000 });
      expect(new TextDecoder().decode(r.data)).toBe('over tls');
      expect(nc.info?.tls_required).toBe(true);
    } finally {
      await nc.close();
    }
  });

  it("refuses a server whose certificate the system's CAs do not vouch for", async () => {
    const e = await connectNats({ ...base(), tls: { certFile: f('client.pem'), keyFile: f('client.key') } }).then(
      () => undefined,
      (x: unknown) => x as { code?: string; cause?: unknown },
    );
    expect(e?.code).toBe('FLEET_INFRA_001');
    expect(String(e?.cause)).toMatch(/certificate/);
  });

  it('is refused by a server that verifies clients when it has no client certificate', async () => {
    await expect(connectNats({ ...base(), tls: { caFile: f('ca.pem') } })).rejects.toThrow(/cannot connect/);
  });

  it('names a missing file, and a certificate without its key, as configuration errors', async () => {
    await expect(connectNats({ ...base(), tls: { caFile: f('missing.pem') } })).rejects.toMatchObject({ code: 'FLEET_CONFIG_001', message: expect.stringContaining('missing.pem') });
    await expect(connectNats({ ...base(), tls: { caFile: f('ca.pem'), certFile: f('client.pem') } })).rejects.toMatchObject({ code: 'FLEET_CONFIG_001', message: expect.stringMatching(/needs its key/) });
  });
});
