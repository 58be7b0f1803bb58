#!/usr/bin/env bash
# squad's main job on a scratch repository: decisions dropped by several writers, validated,
# committed one per decision, their status changed by later records, and the log verified.
# (Until `squad run` lands, the "agents" here are scripted writers using the drop-box.)
set -euo pipefail
squad=${SQUAD:-"$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/squad"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
git init -q -b main
git config user.name "Demo User"
git config user.email demo@example.com
echo "print('hello')" > app.py && git add app.py && git commit -qm "the user's app"

"$squad" init --no-agents
# An architect and a security reviewer drop records in parallel, through the drop-box.
"$squad" decide --no-ingest --agent architect --title "Store sessions in SQLite" \
  --context "Sessions must survive restarts." --decision "Use SQLite in WAL mode." \
  --consequences "One writer at a time." --tag storage &
"$squad" decide --no-ingest --agent security --title "Rate-limit the login endpoint" \
  --context "Credential stuffing." --decision "10 attempts per minute per IP." --tag security &
wait
# Another tool writes a file straight into the inbox; it is picked up once complete.
cat > decisions/inbox/from-a-script.md <<'DROP'
---
title: Log every failed login
agent: tester
tags: [security]
---

## Context

Rate limits need evidence.

## Decision

Emit one structured log line per failed login.
DROP
touch -d '-5 seconds' decisions/inbox/from-a-script.md
"$squad" ingest
id_of() {  # the id of the decision titled $1 (the parallel writers raced for numbers)
  "$squad" log --json | python3 -c "import json,sys; print(next(r['id'] for r in json.load(sys.stdin) if r['title'] == sys.argv[1]))" "$1"
}
"$squad" accept "$(id_of "Store sessions in SQLite")" --reason "Fine for one node."
"$squad" supersede "$(id_of "Rate-limit the login endpoint")" --agent security --title "Rate-limit per account and per IP" \
  --decision "10 per minute per IP, 20 per hour per account."
echo "--- the log ---"
"$squad" log
echo "--- verify ---"
"$squad" verify
echo "--- git log ---"
git log --stat --format='%h %s%n%(trailers:key=Squad-Decision,key=Squad-Agent)' -3
