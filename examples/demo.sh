#!/usr/bin/env bash
# squad's main job, for real, on a copy of the example repository: the lead routes nothing
# here (three specialists are named), the agents run in parallel on the embedded local model,
# their drops are validated and committed one per decision, the log is verified, and the
# recorded run is replayed offline.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
squad=${SQUAD:-"$here/../.venv/bin/squad"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here/shop" "$work/shop"
cd "$work/shop"
git init -q -b main
git config user.name "Demo User"
git config user.email demo@example.com
git add . && git commit -qm "the shop app"
"$squad" init
echo "--- squad run (embedded local model; a weak 135M model, so expect shallow prose) ---"
"$squad" run "Make orders survive a restart and stop anonymous abuse of the order endpoint" \
  --agents architect,security,tester --json \
  | python3 -c "
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e['event'] in ('commit', 'failed', 'quarantine', 'stop'):
        print(e['event'], {k: e[k] for k in ('agent', 'id', 'title', 'error', 'reason', 'drop') if k in e})
    elif e['event'] == 'summary':
        print('summary: ok =', e['ok'], '| review with:', e['review'])
"
echo "--- squad log ---"
"$squad" log
echo "--- git log ---"
git log --stat --format='%h %s%n%(trailers:key=Squad-Decision,key=Squad-Agent,key=Squad-Run)' -4
echo "--- squad verify ---"
"$squad" verify
echo "--- squad replay (offline, from the run's cassette) ---"
"$squad" replay
