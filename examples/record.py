"""Record the example run that this project's CI replays: `examples/shop-run.bundle`.

Builds a fresh repository from `examples/shop/`, runs `squad run` on it against a backend,
and saves the repository (with the run's event log and cassette committed) as a git bundle.
`tests/test_example_run.py` clones the bundle and replays it, so any change to squad that
alters what the agents are asked shows up as a divergence; re-record with this script when
the change is intended.

    .venv/bin/python examples/record.py                      # the embedded local model
    .venv/bin/python examples/record.py --backend scripted   # the tests' scripted server
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from scripted_server import RecordedRequest, ScriptedServer, Text, ToolCalls  # noqa: E402

GOAL = "Make orders survive a restart and stop anonymous abuse of the order endpoint."
PINNED = {"GIT_AUTHOR_NAME": "Example User", "GIT_AUTHOR_EMAIL": "user@example.com",
          "GIT_COMMITTER_NAME": "Example User", "GIT_COMMITTER_EMAIL": "user@example.com",
          "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
          "SQUAD_NOW": "2026-01-01T00:00:00Z"}
FIRST = {
    "architect": ("Persist orders in SQLite", "ORDERS is an in-memory dict in app.py, so every "
                  "restart loses all orders.", "Store orders in a SQLite file (stdlib sqlite3) "
                  "with one `orders` table; keep app.py dependency-free.",
                  "Orders survive restarts; one writer at a time is enough for this load."),
    "security": ("Require an API key to post orders", "do_POST accepts any body from anyone.",
                 "POST requires an `X-Api-Key` header matched against keys in an environment "
                 "variable; reject with 401 otherwise, and cap bodies at 16 KiB.",
                 "Anonymous abuse stops; keys must be distributed and rotated."),
    "tester": ("Test the API over real HTTP", "app.py has no tests.",
               "Start the server on a free port in a fixture and test POST/GET over real HTTP, "
               "including a restart that must keep orders.",
               "Tests catch persistence and auth regressions; they need a temp database file."),
}


def scripted(request: RecordedRequest) -> Text | ToolCalls:
    """A believable, deterministic team: look around, decide, then build on the others."""
    if request.body.get("response_format"):
        return Text(json.dumps({"tasks": [
            {"agent": "architect", "task": "Decide how orders are stored so they survive."},
            {"agent": "security", "task": "Decide how to stop anonymous abuse of POST."},
            {"agent": "tester", "task": "Decide how the change will be tested."}]}))
    agent = request.messages[1]["content"].split("# Your charter: ", 1)[1].split(" ", 1)[0]
    done = sum(1 for m in request.messages if m["role"] == "tool")
    second_round = "None yet." not in request.messages[0]["content"]
    if second_round:
        if done:
            return Text("Recorded a follow-up that builds on the first round.")
        title, text = f"{agent.capitalize()} follow-up to the first round", (
            f"The {agent} accepts the first round's decisions and adds: write the decision "
            "down in README.md so operators know it.")
        return ToolCalls([("record_decision", {"title": title, "context": "Round one decided "
                           "storage, auth and tests.", "decision": text,
                           "consequences": "README.md changes.", "tags": [agent]})])
    script = [ToolCalls([("list_files", {})]), ToolCalls([("read_file", {"path": "app.py"})]),
              ToolCalls([("grep", {"pattern": "ORDERS"})])]
    if done < len(script):
        return script[done]
    if done == len(script):
        title, context, decision, consequences = FIRST[agent]
        return ToolCalls([("record_decision", {
            "title": title, "context": context, "decision": decision,
            "consequences": consequences, "tags": [agent]})])
    return Text(f"The {agent} recorded one decision.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "shop-run.bundle")
    parser.add_argument("--backend", choices=["local", "scripted"], default="local")
    args = parser.parse_args()
    squad = [sys.executable, "-m", "squad"]
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer() as server:
        server.responder = scripted
        repo = Path(tmp) / "shop"
        shutil.copytree(HERE / "shop", repo)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SQUAD_"))}
        env.update(PINNED)
        if args.backend == "scripted":
            env["OPENAI_BASE_URL"] = server.base_url

        def run(*cmd: str) -> str:
            return subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True,
                                  text=True).stdout

        run("git", "init", "-q", "-b", "main")
        run("git", "add", ".")
        run("git", "commit", "-qm", "The shop app")
        run(*squad, "init")
        run("git", "config", "user.name", "Example User")
        if args.backend == "scripted":
            (repo / "squad.toml").write_text((repo / "squad.toml").read_text().replace(
                'model = "gpt-4o-mini"', 'model = "scripted"'))
            run("git", "commit", "-qam", "Use the example's model")
        team = [] if args.backend == "scripted" else ["--agents", "architect,security,tester"]
        out = run(*squad, "run", GOAL, *team, "--rounds", "2", "--concurrency", "3", "--json")
        summary = json.loads(out.splitlines()[-1])
        run(*squad, "verify")
        run("git", "bundle", "create", str(args.out.resolve()), "HEAD", "main")
        if not summary["ok"]:
            raise SystemExit(f"the run did not succeed: {json.dumps(summary)[:2000]}")
        calls = sum(a["calls"] for a in summary["agents"])
        print(f"recorded run {summary['run']} ({args.backend}): {len(summary['decisions'])} "
              f"decisions, {calls} agent calls -> {args.out}")


if __name__ == "__main__":
    main()
