// Browser checks of the viewer, run by tests/e2e/viewer.rs with a JSON config argument: drives
// headless Chromium with playwright-core against generated reports and a running `serve`, asserts
// on the rendered page, writes screenshots, and prints one JSON line of measurements last.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { session } from './browser.mjs';

const cfg = JSON.parse(process.argv[2]);
const { page, check, finish } = await session(cfg);

const ready = () => page.waitForSelector('canvas#flame[data-ready="true"]', { timeout: 30000 });
const state = () => page.evaluate(() => window.contprof.state());
const box = (name) => page.evaluate((n) => window.contprof.box(n), name);
async function clickBox(name) {
  const b = await box(name);
  if (!b) throw new Error(`no box for ${name}`);
  const c = await page.locator('canvas#flame').boundingBox();
  await page.mouse.click(c.x + b.x + Math.min(b.w / 2, 40), c.y + b.y + b.h / 2);
}
async function hoverBox(name) {
  const b = await box(name);
  const c = await page.locator('canvas#flame').boundingBox();
  await page.mouse.move(c.x + b.x + Math.min(b.w / 2, 40), c.y + b.y + b.h / 2);
}
const text = (sel) => page.locator(sel).innerText();
const attr = (name) => page.locator('canvas#flame').getAttribute(name);
async function addFilter(mode, regex) {
  await page.selectOption('#filter-mode', mode);
  await page.fill('#filter-input', regex);
  await page.click('#filter-add');
}
async function removeFilters() {
  while (await page.locator('#filter-list button').count()) await page.locator('#filter-list button').first().click();
}

// ---- profile report (file://)
await page.goto(pathToFileURL(cfg.report).href);
await ready();
check((await text('h1')).includes('bin/app at base'), 'report: title shown');
check((await text('#status')).includes('CPU time'), 'report: opens on CPU time');
check((await text('#top tbody')).includes('app::parse'), 'report: top table lists app::parse');
check(Number(await attr('data-rects')) >= 8, 'report: flame graph drew its boxes');
const main = await box('app::main'), parse = await box('app::parse'), utf8 = await box('core::str::from_utf8');
check(main && parse && main.color === parse.color, 'report: frames of one crate share a colour');
check(utf8 && utf8.color !== parse.color, 'report: std has its own colour');
const serde = await box('serde_json::to_string'), render = await box('app::render');
check(render.x < serde.x && render.w > serde.w, 'report: heavier sibling drawn first (left)');
await hoverBox('app::parse');
const tip = await text('#tooltip');
check(tip.includes('app::parse') && tip.includes('src/synthetic.rs:') && /self .*%/.test(tip) && /total .*%/.test(tip),
  `report: tooltip shows function, file:line, self and total (${tip.replace(/\n/g, ' | ')})`);
await clickBox('app::parse');
check((await attr('data-zoom')) === 'app::parse', 'report: click zooms into the box');
check((await box('app::parse')).w > 500 && (await box('app::render')) === null, 'report: zoomed box spans the width');
await clickBox('all');
check((await attr('data-zoom')) === 'all', 'report: clicking the root zooms back out');
await addFilter('highlight', '^core::');
const hl = await state();
check(hl.highlighted >= 2 && (await text('#status')).includes('highlighted:'), `report: highlight filter marks core frames (${hl.highlighted})`);
await addFilter('hide', '^app::parse$');
check((await box('app::parse')) === null && (await box('core::str::from_utf8')) !== null, 'report: hide filter removes frames, keeps callees');
await removeFilters();
await addFilter('show', 'serde_json');
const shown = await state();
check((await box('app::render')) === null && (await box('serde_json::to_string')).w > 500, 'report: show filter keeps matching stacks only');
check(shown.total === 230 * 1e6, `report: show filter total is serde_json's (${shown.total})`);
await removeFilters();
await page.selectOption('#type', { label: 'Allocated bytes' });
check((await attr('data-type')) === 'alloc_space', 'report: profile type switch to allocated bytes');
check((await text('#status')).includes('Allocated bytes') && (await text('#status')).includes('MiB'), 'report: status in bytes');
check((await page.locator('#top tbody tr').first().innerText()).includes('app::render'), 'report: top table follows the type (Vec::push\'s bytes counted in its caller)');
await page.uncheck('#fold-runtime');
check((await page.locator('#top tbody tr').first().innerText()).includes('alloc::vec::Vec<T>::push'), 'report: std frames counted as their own on request');
await page.check('#fold-runtime');
const labels = await page.locator('#type option').allInnerTexts();
check(['CPU time', 'Allocated bytes', 'Allocation count'].every((l) => labels.includes(l)), `report: type selector lists recorded types (${labels})`);
await page.selectOption('#type', { label: 'CPU time' });
await page.click('#top th[data-sort="total"]');
check((await page.locator('#top tbody tr').first().innerText()).includes('app::main'), 'report: table sorts by total');
await page.locator('#top tbody tr', { hasText: 'core::fmt::write' }).click();
check((await attr('data-zoom')) === 'core::fmt::write', 'report: table row focuses the flame graph');
await page.screenshot({ path: join(cfg.artifacts, 'report-profile.png'), fullPage: true });
// The program's prologue (entry, libc, std's runtime) is one frame until asked for.
const PROLOGUE = ['_start', '__libc_start_main_impl', '__libc_start_call_main', 'main', 'std::rt::lang_start_internal',
  'std::panicking::catch_unwind', 'std::rt::lang_start::{{closure}}', 'std::sys::backtrace::__rust_begin_short_backtrace'];
const firstRows = async () => (await page.locator('#top tbody tr td.fn').allInnerTexts()).slice(0, 10);
await clickBox('all');
check((await box('[program start]')) !== null && (await box('__libc_start_call_main')) === null, 'report: prologue folded into one frame');
check((await box('app::main')).y === 2 * 18, 'report: the user\'s main is the third row (all, program start, main)');
check(!(await firstRows()).some((n) => PROLOGUE.includes(n)), `report: no prologue frame in the first 10 rows (${await firstRows()})`);
const legend = await text('#legend');
check(!/\b[A-Z]\b/.test(legend.replace(/[^ -~]/g, ' ')), `report: the crate legend names crates only (${legend})`);
await page.check('#expand-prologue');
check((await box('__libc_start_call_main')) !== null && (await box('[program start]')) === null, 'report: the prologue expands on request');
await page.screenshot({ path: join(cfg.artifacts, 'report-profile-prologue.png'), fullPage: true });
await page.uncheck('#expand-prologue');

// ---- worker threads and library frames between the user's functions (file://, issue 27)
await page.goto(pathToFileURL(cfg.threadsReport).href);
await ready();
check((await box('rayon_core::registry::main_loop')) === null && (await box('[program start]')) !== null,
  'threads: a worker thread\'s start and scheduler frames are folded into the prologue');
const paths = (name) => page.evaluate((n) => window.contprof.boxes().filter((b) => b.name === n).map((b) => b.path.join(' > ')), name);
const workPaths = await paths('app::work');
check(workPaths.includes('[program start] > app::work'), `threads: the worker's function sits right under the prologue (${workPaths})`);
check(workPaths.includes('[program start] > app::main > [library frames] > app::work'),
  `threads: rayon's plumbing between app::main and app::work is one box (${workPaths})`);
check((await box('rayon_core::join::join_context')) === null, 'threads: the library frames are folded');
check((await box('std::io::Write::write_all')) !== null, 'threads: library frames with none of the user\'s code below stay');
check((await state()).libraryFolded === true, 'threads: library frames folded by default');
await page.check('#expand-library');
check((await box('[library frames]')) === null && (await box('rayon_core::join::join_context')) !== null,
  'threads: the library frames expand on request');
await page.screenshot({ path: join(cfg.artifacts, 'report-threads-expanded.png'), fullPage: true });
await page.uncheck('#expand-library');
await page.check('#expand-prologue');
check((await box('rayon_core::registry::main_loop')) !== null, 'threads: the worker prologue expands on request');
await page.uncheck('#expand-prologue');
await page.screenshot({ path: join(cfg.artifacts, 'report-threads.png'), fullPage: true });

// ---- compare report (file://)
await page.goto(pathToFileURL(cfg.compareReport).href);
await ready();
check(!(await page.locator('#regressions').isHidden()), 'compare report: regression table shown');
const findings = await text('#findings tbody');
check(/regression/.test(findings) && findings.includes('app::parse'), 'compare report: app::parse listed as a regression');
const improved = page.locator('#findings tbody tr', { hasText: 'improvement' }).first();
check((await improved.count()) === 1 && /app::render/.test(await improved.innerText()), `compare report: faster function (its std leaves folded into it) listed as an improvement (${findings.replace(/\n/g, ' | ')})`);
const red = await box('app::parse'), blue = await box('app::render');
check(red.color.startsWith('hsl(0,'), `compare report: slower frame is red (${red.color})`);
check(blue.color.startsWith('hsl(218,'), `compare report: faster frame is blue (${blue.color})`);
await hoverBox('app::parse');
const dtip = await text('#tooltip');
check(dtip.includes('base:') && dtip.includes('head:') && /change: total \+\d/.test(dtip), `compare report: tooltip has both values and the change (${dtip.replace(/\n/g, ' | ')})`);
const improvedFn = await improved.locator('a.focus-link').innerText();
await improved.locator('a.focus-link').click();
check((await attr('data-zoom')) === improvedFn, `compare report: regression link focuses the flame graph on ${improvedFn}`);
await clickBox('all');
// app::parse tripled, in its own code and in the std function it calls (counted in it).
const firstRow = (await firstRows())[0];
check(firstRow === 'app::parse', `compare report: the regressed function is the first row by change of self (${firstRow})`);
check(!(await firstRows()).some((n) => PROLOGUE.includes(n)), `compare report: no prologue frame in the first 10 rows (${await firstRows()})`);
const strong = [];
for (const name of ['app::main', 'serde_json::to_string', 'core::fmt::write', 'app::parse', 'core::str::from_utf8', '[program start]']) {
  const b = await box(name);
  const light = b ? Number(b.color.match(/([\d.]+)%\)$/)?.[1] ?? 100) : 100;
  if (b && !b.color.startsWith('hsl(218,') && light < 70) strong.push(name);
}
check(strong.includes('app::parse') && !strong.includes('serde_json::to_string') && !strong.includes('core::fmt::write'),
  `compare report: the regressed function is strongly red, unchanged ones are not (${strong})`);
check((await text('#legend')).includes("beyond the run's own"), 'compare report: the legend says what the colour is');
await page.screenshot({ path: join(cfg.artifacts, 'report-compare.png'), fullPage: true });

// ---- a real workload's compare page (the regress fixture, `thirty` 1.5x slower)
await page.goto(pathToFileURL(cfg.realCompare).href);
await ready();
const realRows = await firstRows();
check(realRows[0] === 'regress::thirty', `real compare: the regressed function is the first row (${realRows})`);
const prologueNames = /^(_start|__libc_start|main$|std::rt::|std::panicking::|std::panic::|core::ops::function::|std::sys::backtrace::)/;
check(!realRows.some((n) => prologueNames.test(n)), `real compare: no prologue frame in the first 10 rows (${realRows})`);
check((await box('[program start]')) !== null && (await box('std::rt::lang_start_internal')) === null, 'real compare: the prologue is one frame');
const strongRed = (await page.evaluate(() => window.contprof.boxes())).filter((b) => {
  const m = b.color.match(/^hsl\(0, 85%, ([\d.]+)%\)$/);
  return m && Number(m[1]) < 70;
});
check(strongRed.length > 0 && strongRed.every((b) => b.name === 'regress::thirty' || b.path.includes('regress::thirty')),
  `real compare: only regress::thirty (and what is inlined in it) is strongly red (${strongRed.filter((b) => b.name !== 'regress::thirty' && !b.path.includes('regress::thirty')).map((b) => b.path.join(' > ') + ' ' + b.color)})`);
await page.screenshot({ path: join(cfg.artifacts, 'real-compare.png'), fullPage: true });
await page.check('#expand-prologue');
check((await box('std::rt::lang_start_internal')) !== null, 'real compare: the prologue expands on request');
await page.screenshot({ path: join(cfg.artifacts, 'real-compare-prologue.png'), fullPage: true });

// ---- server
let resp = await page.goto(cfg.server);
check(resp.status() === 200, 'serve: run list loads');
check((await page.locator('#runs tbody tr').count()) === 2, 'serve: both runs listed');
await page.fill('#run-filter input[name=branch]', 'feature');
await page.click('#run-filter button[type=submit]');
check((await page.locator('#runs tbody tr').count()) === 1 && (await text('#runs tbody')).includes(cfg.headRun), 'serve: branch filter');
resp = await page.goto(`${cfg.server}?commit=aaaa&tag=service%3Dapi`);
check((await page.locator('#runs tbody tr').count()) === 1 && (await text('#runs tbody')).includes(cfg.baseRun), 'serve: commit and tag filters');
await page.goto(cfg.server);
await page.check(`tr[data-run="${cfg.baseRun}"] input[name=run]`);
await page.check(`tr[data-run="${cfg.headRun}"] input[name=run]`);
await page.click('#view-selected');
await ready();
const merged = await state();
check(merged.total === (3 * 630 + 9 + 3 * 805 + 9) * 1e6, `serve: merged view sums both runs' profiles (${merged.total})`);
check((await page.locator('#home a').count()) === 1, 'serve: view links back to the runs');
await clickBox('serde_json::to_string');
check((await attr('data-zoom')) === 'serde_json::to_string', 'serve: click-to-zoom');
await page.goto(cfg.server);
await page.check(`tr[data-run="${cfg.baseRun}"] input[name=base]`);
await page.check(`tr[data-run="${cfg.headRun}"] input[name=head]`);
await page.selectOption('select[name=group]', 'bin/app');
await page.click('#compare-selected');
await ready();
check((await text('#findings tbody')).includes('app::parse'), 'serve: compare view lists the regression');
const verdicts = await page.locator('#findings tbody tr td:first-child').allInnerTexts();
const order = { regression: 0, 'possible regression': 1, shifted: 2, new: 3, improvement: 4, 'possible improvement': 5 };
check(verdicts.every((v, i) => i === 0 || (order[verdicts[i - 1]] ?? 9) <= (order[v] ?? 9)), `serve: regressions first, then shifted, then improvements (${verdicts})`);
await page.locator('#findings a.focus-link', { hasText: 'app::parse' }).first().click();
check((await attr('data-zoom')) === 'app::parse', 'serve: regression link focuses the flame graph');
await addFilter('highlight', 'from_utf8');
check((await state()).highlighted >= 1, 'serve: highlight in compare view');
await page.screenshot({ path: join(cfg.artifacts, 'serve-compare.png'), fullPage: true });
resp = await page.goto(`${cfg.server}view?run=20250101T000000.000000Z-0000000000`);
check(resp.status() === 404 && (await text('#error')).includes('not found'), 'serve: unknown run is a 404 with a message');
resp = await page.goto(`${cfg.server}view?run=..%2F..%2Fstore.json`);
check(resp.status() === 400 && (await text('#error')).includes('not a run id'), 'serve: malformed query is a 400');

// ---- large profile: first view and zoom
await page.goto('about:blank');
await page.goto(pathToFileURL(cfg.largeReport).href);
await ready();
const timings = await page.evaluate(() => window.contprof.timings);
const zoomMs = [];
for (const name of ['app::run', 'app::module0::func0', 'all']) {
  const b = await box(name);
  if (!b) { check(false, `large: box ${name} drawn`); continue; }
  await clickBox(name);
  zoomMs.push(await page.evaluate(() => window.contprof.lastDrawMs()));
}
await page.selectOption('#type', { label: 'Allocated bytes' });
const switchDraw = await page.evaluate(() => window.contprof.lastDrawMs());
check((await attr('data-type')) === 'alloc_space', 'large: type switch');
await page.screenshot({ path: join(cfg.artifacts, 'report-large.png') });
check(timings.nodes > 100000, `large: ${timings.nodes} tree nodes for ${cfg.largeStacks} stacks`);

const failures = await finish();
console.log(JSON.stringify({ failures, large: { ...timings, zoomDrawMs: zoomMs, typeSwitchDrawMs: switchDraw, stacks: cfg.largeStacks } }));
process.exit(failures.length ? 1 : 0);
