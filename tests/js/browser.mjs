// The browser session both viewer scripts run in: headless Chromium (playwright-core) with a fresh
// profile, every request outside the page's own origin (the loopback server, file:, data:) and
// every script error recorded, and the ok/FAIL checks they report.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export async function session(cfg) {
  const failures = [];
  const check = (ok, what) => {
    if (!ok) failures.push(what);
    console.error(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  };
  const profileDir = mkdtempSync(join(tmpdir(), 'contprof-chromium-'));
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: cfg.chromium,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  // Nothing may be fetched from outside: reports are self-contained, the server is on loopback.
  const external = [];
  context.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith('file:') && !u.startsWith(cfg.server) && !u.startsWith('data:')) external.push(u);
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The last checks, then the browser closed: returns the failures.
  const finish = async () => {
    check(errors.length === 0, `no script errors (${errors.join('; ')})`);
    check(external.length === 0, `no requests outside the report and the server (${external.join(', ')})`);
    await context.close();
    rmSync(profileDir, { recursive: true, force: true });
    return failures;
  };
  return { page, check, finish };
}
