#!/usr/bin/env node
// Posts a `cargo contprof check` report as ONE sticky pull-request comment: the comment carrying the
// hidden marker `<!-- cargo-contprof -->` is updated in place on every push, never duplicated.
//
// Runs in the privileged `contprof-comment.yml` workflow (triggered by `workflow_run`), on the report
// the unprivileged pull-request job uploaded: it reads that report as data and never runs PR code.
// Node 18+ with no dependencies (global fetch).
//
//   node sticky-comment.mjs --report report.md (--pr N | --pr-file FILE) [--head-sha SHA]
//
// Environment: GITHUB_TOKEN (missing: skip with a warning, exit 0), GITHUB_REPOSITORY (owner/name),
// GITHUB_API_URL (default https://api.github.com). With --head-sha, the pull request's head must be
// that commit, so that a forged PR number in an uploaded artifact cannot redirect the comment.
// Exit codes: 0 posted, updated or skipped with a warning; 1 the API refused or bad input.

import { readFileSync, existsSync } from "node:fs";

const MARKER = "<!-- cargo-contprof -->";
// GitHub's limit for a comment body is 65536 characters.
const MAX_BODY = 65000;

// The author of the comments this script writes: the workflow token's bot. A comment by anyone
// else is never updated, even if it carries the marker (anyone can write the marker).
const AUTHOR = process.env.CONTPROF_COMMENT_AUTHOR || "github-actions[bot]";

// A workflow command's message is one line: GitHub's escapes for `%`, CR and LF, so that text
// from an artifact (a PR author controls it) cannot start a command of its own.
function escapeCommand(message) {
  return String(message).replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
}

function warn(message) {
  console.log(`::warning title=cargo contprof comment::${escapeCommand(message)}`);
}

function fail(message) {
  console.log(`::error title=cargo contprof comment::${escapeCommand(message)}`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    const value = argv[i + 1];
    if (!key?.startsWith("--") || value === undefined) fail(`bad arguments near \`${key ?? ""}\``);
    args[key.slice(2)] = value;
  }
  return args;
}

async function api(base, token, method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      accept: "application/vnd.github+json",
      authorization: `Bearer ${token}`,
      "x-github-api-version": "2022-11-28",
      "user-agent": "cargo-contprof-sticky-comment",
      ...(body ? { "content-type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status}: ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const token = process.env.GITHUB_TOKEN;
  if (!token) {
    warn("no GITHUB_TOKEN: the report is not posted as a comment (it is in the job summary and artifacts)");
    return;
  }
  const repo = process.env.GITHUB_REPOSITORY ?? "";
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) fail(`GITHUB_REPOSITORY \`${repo}\` is not owner/name`);
  const base = (process.env.GITHUB_API_URL || "https://api.github.com").replace(/\/+$/, "");

  if (!args.report || !existsSync(args.report)) {
    warn(`no report at \`${args.report ?? ""}\` (no baseline yet, or the check did not get that far): nothing to post`);
    return;
  }
  const prText = args.pr ?? (args["pr-file"] && existsSync(args["pr-file"]) ? readFileSync(args["pr-file"], "utf8") : "");
  const pr = prText.trim();
  if (!/^[1-9][0-9]{0,9}$/.test(pr)) fail(`the pull request number \`${pr.slice(0, 20)}\` is not a number`);

  let body = readFileSync(args.report, "utf8");
  if (!body.includes(MARKER)) body = `${MARKER}\n${body}`;
  if (body.length > MAX_BODY) body = `${body.slice(0, MAX_BODY)}\n\n… (truncated; the whole report is in the workflow's artifacts)\n`;

  if (args["head-sha"]) {
    const pull = await api(base, token, "GET", `/repos/${repo}/pulls/${pr}`);
    if (pull?.head?.sha !== args["head-sha"]) {
      fail(`pull request #${pr} is at ${pull?.head?.sha}, not ${args["head-sha"]}: not commenting`);
    }
  }

  let existing = null;
  for (let page = 1; ; page++) {
    const comments = await api(base, token, "GET", `/repos/${repo}/issues/${pr}/comments?per_page=100&page=${page}`);
    existing =
      comments.find((c) => c?.user?.login === AUTHOR && typeof c.body === "string" && c.body.includes(MARKER)) ??
      null;
    if (existing || comments.length < 100) break;
  }
  if (existing) {
    await api(base, token, "PATCH", `/repos/${repo}/issues/comments/${existing.id}`, { body });
    console.log(`updated comment ${existing.id} on #${pr}`);
  } else {
    const created = await api(base, token, "POST", `/repos/${repo}/issues/${pr}/comments`, { body });
    console.log(`created comment ${created.id} on #${pr}`);
  }
}

main().catch((e) => fail(String(e?.message ?? e)));
