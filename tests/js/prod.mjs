// Browser checks of the viewer's production section, run by tests/e2e/prod.rs with a JSON config
// argument: headless Chromium (playwright-core) against `serve` over a store that real service
// replicas filled, and against a `prod report` file. Writes screenshots; prints one JSON line last.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { session } from './browser.mjs';

const cfg = JSON.parse(process.argv[2]);
const { page, check, finish } = await session(cfg);
const ready = () => page.waitForSelector('canvas#flame[data-ready="true"]', { timeout: 30000 });
const text = (sel) => page.locator(sel).innerText();
const rows = () => page.locator('#breakdown tbody tr').count();
const timings = {};
async function timed(name, f) {
  const t = Date.now();
  await f();
  timings[name] = Date.now() - t;
}

// ---- services, then a service's CPU windows of the last day
await page.goto(`${cfg.server}prod`);
check((await text('#services')).includes(cfg.service), 'prod: the service is listed');
await timed('viewMs', async () => {
  await page.locator(`tr[data-service="${cfg.service}"] a.prod-type`, { hasText: 'cpu' }).click();
  await ready();
});
check((await text('h1')).includes(`${cfg.service} cpu`), 'prod view: title names service and type');
check((await rows()) === 2, `prod view: breakdown has both deployments (${await rows()})`);
check((await text('#breakdown')).includes(cfg.base) && (await text('#breakdown')).includes(cfg.head), 'prod view: breakdown names both versions');
check((await page.locator('#timeline polyline.series').count()) === 2, 'prod view: timeline has one series per version');
check((await page.locator('#timeline circle').count()) >= 4, 'prod view: timeline points');
check((await text('#top tbody')).includes('render_rows'), 'prod view: top functions of the merged windows');
check((await text('#status')).includes('CPU time'), 'prod view: flame graph on CPU time');
const all = await page.evaluate(() => window.contprof.state().total);
await page.screenshot({ path: join(cfg.artifacts, 'prod-view.png'), fullPage: true });

// ---- colour by zone, the span picker, and a label filter
await page.selectOption('select[name=color]', 'zone');
await page.click('#prod-apply');
await ready();
check((await page.locator('#timeline polyline.series').count()) === 1, 'prod view: coloured by zone (one zone)');
await page.click('a.span[data-span="1h"]');
await ready();
check(page.url().includes('since=1h'), 'prod view: span picker');
await page.fill('input[name=version]', cfg.head);
await page.click('#prod-apply');
await ready();
check((await rows()) === 1 && (await text('#breakdown')).includes(cfg.head), 'prod view: version filter keeps one deployment');
const filtered = await page.evaluate(() => window.contprof.state().total);
check(filtered > 0 && filtered < all, `prod view: the flame graph shows the filtered windows only (${filtered} < ${all})`);
await page.fill('input[name=label]', 'team=search');
await page.click('#prod-apply');
await ready();
check((await rows()) === 1, 'prod view: a custom label combines with the version filter');
let resp = await page.goto(`${cfg.server}prod/view?service=${cfg.service}&label=team%3Dads`);
check(resp.status() === 404 && (await text('#error')).includes('in that time span the store has'), 'prod view: an empty selection says what exists');
resp = await page.goto(`${cfg.server}prod/view?service=${cfg.service}&type=bogus`);
check(resp.status() === 400 && (await text('#error')).includes('not a profile type'), 'prod view: a bad type is a 400');

// ---- compare two selections
await page.goto(`${cfg.server}prod/view?service=${cfg.service}`);
await ready();
await page.fill('#prod-base', `version=${cfg.base}`);
await page.fill('#prod-head', `version=${cfg.head}`);
await timed('compareMs', async () => {
  await page.click('#prod-compare-go');
  await ready();
});
check((await text('#findings tbody')).includes('render_rows'), 'prod compare: the verdict table names render_rows');
check((await text('#status')).includes('per window'), 'prod compare: differential flame graph of per-window averages');
check((await page.locator('#timeline polyline.series').count()) === 2, 'prod compare: timeline of base and head');
await page.locator('#findings a.focus-link', { hasText: 'render_rows' }).first().click();
check((await page.locator('canvas#flame').getAttribute('data-zoom')).includes('render_rows'), 'prod compare: a finding focuses the flame graph');
await page.screenshot({ path: join(cfg.artifacts, 'prod-compare.png'), fullPage: true });

// ---- the same comparison as a file
await page.goto(pathToFileURL(cfg.report).href);
await ready();
check((await text('#findings tbody')).includes('render_rows'), 'prod report: the file has the verdicts');
check((await page.locator('#prod-filter').count()) === 0, 'prod report: no server forms in a file');
await page.screenshot({ path: join(cfg.artifacts, 'prod-report.png'), fullPage: true });

const failures = await finish();
console.log(JSON.stringify({ failures, timings }));
process.exit(failures.length ? 1 : 0);
