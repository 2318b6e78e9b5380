#!/usr/bin/env node
// The logic of the cargo contprof GitHub Action (`action.yml` at the repository root), kept out
// of the YAML so that the test suite runs it with a simulated GitHub environment
// (`tests/e2e/action.rs`). Node 18+, no dependencies.
//
//   node action.mjs install-key   prints the cache key of the tool built from the action's own
//                                 sources (GITHUB_ACTION_PATH, else this file's repository)
//   node action.mjs check         runs `cargo contprof check`, writes the outputs, prepares the
//                                 report for the comment workflow; exits 0 whatever the verdict
//                                 (the action's last step fails the job when `fail=true`)
//   node action.mjs comment       in the privileged `workflow_run` workflow: posts the downloaded
//                                 report as the sticky comment (sticky-comment.mjs)
//
// Inputs come as environment variables set by action.yml: CONTPROF_ACTION_TARGET and
// CONTPROF_ACTION_FLAGS (flags of `check`, split like a shell does, quotes kept together),
// CONTPROF_ACTION_FAIL_ON_REGRESSION (`auto`: on pull requests only; `true`; `false`),
// CONTPROF_ACTION_REPORT_DIR. GitHub's own: GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_OUTPUT.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));

function escapeCommand(message) {
  return String(message).replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
}

function annotate(level, message) {
  console.log(`::${level} title=cargo contprof::${escapeCommand(message)}`);
}

function fail(message) {
  annotate("error", message);
  process.exit(1);
}

/// Splits flags as a POSIX shell would for words and quotes (no variables, no globs).
function splitFlags(text) {
  const words = [];
  let word = null;
  let quote = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === "\\" && quote === '"' && i + 1 < text.length) word += text[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= "";
    } else if (c === "\\" && i + 1 < text.length) {
      word = (word ?? "") + text[++i];
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else {
      word = (word ?? "") + c;
    }
  }
  if (quote) fail(`unbalanced ${quote} in \`${text}\``);
  if (word !== null) words.push(word);
  return words;
}

function setOutputs(outputs) {
  const file = process.env.GITHUB_OUTPUT;
  const lines = Object.entries(outputs).map(([k, v]) => `${k}=${v}\n`).join("");
  if (file) appendFileSync(file, lines);
  else process.stdout.write(lines);
}

function readEvent() {
  const path = process.env.GITHUB_EVENT_PATH;
  if (!path || !existsSync(path)) return {};
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    fail(`the event payload ${path} is not JSON: ${e.message}`);
  }
}

/// Whether a regression fails the job: `auto` fails on pull requests, where the gate is, and not
/// where the baseline is recorded (a push to the default branch: the regression is in the summary).
function failsOnRegression(setting, eventName) {
  switch ((setting || "auto").toLowerCase()) {
    case "true":
      return true;
    case "false":
      return false;
    case "auto":
      return eventName === "pull_request" || eventName === "pull_request_target" || eventName === "merge_group";
    default:
      fail(`fail-on-regression must be auto, true or false, not \`${setting}\``);
  }
}

function check() {
  const event = readEvent();
  const eventName = process.env.GITHUB_EVENT_NAME || "";
  const reportDir = resolve(process.env.CONTPROF_ACTION_REPORT_DIR || "contprof-report");
  const failOn = failsOnRegression(process.env.CONTPROF_ACTION_FAIL_ON_REGRESSION, eventName);
  const args = [
    "contprof",
    "check",
    ...splitFlags(process.env.CONTPROF_ACTION_TARGET || ""),
    ...splitFlags(process.env.CONTPROF_ACTION_FLAGS || ""),
    "--report-dir",
    reportDir,
  ];
  mkdirSync(reportDir, { recursive: true });
  console.log(`cargo ${args.join(" ")}`);
  // GITHUB_ACTIONS=true (set by the runner) turns on `check --github`: annotations on the
  // regressed functions' lines and the report in the job summary.
  const run = spawnSync("cargo", args, { stdio: "inherit" });
  const code = run.status ?? 2;
  if (run.error) annotate("error", `could not run cargo: ${run.error.message}`);
  // For the comment workflow, which checks the number against the run's head commit.
  const pr = event.pull_request?.number;
  if (Number.isInteger(pr)) writeFileSync(join(reportDir, "pr-number"), `${pr}\n`);
  const regression = code === 1;
  let failJob = false;
  if (regression && failOn) {
    annotate("error", "cargo contprof found a regression: see the job summary");
    failJob = true;
  } else if (regression) {
    annotate("warning", `cargo contprof found a regression (not failing on a ${eventName || "local"} event)`);
  } else if (code !== 0) {
    annotate("error", `cargo contprof check failed with exit code ${code} (see the log above)`);
    failJob = true;
  }
  setOutputs({ "exit-code": code, regression, fail: failJob, "report-dir": reportDir });
}

function comment() {
  const event = readEvent();
  const run = event.workflow_run;
  if (!run) fail("mode `comment` runs on the `workflow_run` event of the workflow that ran the check");
  if (run.event !== "pull_request") {
    console.log(`the checked run was a ${run.event} event, not a pull request: nothing to comment`);
    return;
  }
  const dir = resolve(process.env.CONTPROF_ACTION_REPORT_DIR || "contprof-report");
  const report = join(dir, "report.md");
  if (!existsSync(report) || !existsSync(join(dir, "pr-number"))) {
    annotate("warning", `no report in ${dir}: the check did not get as far as a comparison`);
    return;
  }
  const posted = spawnSync(
    process.execPath,
    [join(HERE, "sticky-comment.mjs"), "--report", report, "--pr-file", join(dir, "pr-number"), "--head-sha", run.head_sha],
    { stdio: "inherit" },
  );
  process.exit(posted.status ?? 1);
}

/// A key that changes with any source the tool is built from: the workspace's manifest and lock
/// file and every member crate the manifest lists.
function installKey() {
  const root = resolve(process.env.GITHUB_ACTION_PATH || join(HERE, "../.."));
  const hash = createHash("sha256");
  const walk = (path) => {
    const st = statSync(path);
    if (st.isDirectory()) {
      for (const name of readdirSync(path).sort()) {
        if (name !== "target" && !name.startsWith(".")) walk(join(path, name));
      }
    } else {
      hash.update(path.slice(root.length)).update("\0").update(readFileSync(path)).update("\0");
    }
  };
  const manifest = readFileSync(join(root, "Cargo.toml"), "utf8");
  const members = [...(/^members\s*=\s*\[([^\]]*)\]/m.exec(manifest)?.[1] ?? "").matchAll(/"([^"]+)"/g)].map((m) => m[1]);
  for (const part of ["Cargo.toml", "Cargo.lock", ...members]) {
    if (existsSync(join(root, part))) walk(join(root, part));
  }
  const version = /^version\s*=\s*"([^"]+)"/m.exec(manifest)?.[1] ?? "0";
  console.log(`cargo-contprof-${process.platform}-${process.arch}-${version}-${hash.digest("hex").slice(0, 16)}`);
}

const commands = { check, comment, "install-key": installKey };
const command = commands[process.argv[2]];
if (!command) fail(`usage: action.mjs ${Object.keys(commands).join("|")}`);
command();
