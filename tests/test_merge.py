"""Branches, pull requests and merges: a bare "origin" and several clones, real processes.

`squad merge REF` joins REF's decision log into the current branch; plain git merges, pulls
and squash merges must never leave a broken log that nobody reports.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Templates, git, squad
from scripted_server import RecordedRequest, ScriptedServer, Text, ToolCalls

OFFLINE = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}  # nothing listens there


# ---- a team: an origin and clones ---------------------------------------------------------


def _origin(bare: Path) -> None:
    """A bare origin whose main holds squad's layout and one decision."""
    git(bare.parent, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = bare.parent / "seed"
    git(bare.parent, "clone", "-q", str(bare), str(seed))
    (seed / "app.py").write_text("print('hello')\n")
    git(seed, "add", "app.py")
    git(seed, "commit", "-qm", "initial")
    squad(seed, "init", "--no-agents")
    (seed / "agents").mkdir()
    (seed / "agents" / "architect.md").write_text(
        (Path(__file__).parent.parent / "agents" / "architect.md").read_text())
    (seed / "squad.toml").write_text("[llm]\nmodel = 'scripted'\nmax_retries = 0\n")
    git(seed, "add", ".")
    git(seed, "commit", "-qm", "settings")
    decide(seed, "Base decision")
    git(seed, "push", "-q", "origin", "main")


@pytest.fixture
def origin(templates: Templates, tmp_path: Path) -> Path:
    """A copy of a bare origin whose main holds squad's layout and one decision."""
    return templates.copy("merge-origin", _origin, tmp_path / "origin.git")[0]


def clone(origin: Path, name: str, branch: str | None = None) -> Path:
    path = origin.parent / name
    git(origin.parent, "clone", "-q", str(origin), str(path))
    if branch:
        git(path, "switch", "-qc", branch)
    return path


def decide(repo: Path, title: str, *args: str) -> None:
    squad(repo, "decide", "--title", title, "--decision", f"{title}.", *args)


def ids_by_title(repo: Path) -> dict[str, int]:
    return {r["title"]: r["id"] for r in log(repo)}


def log(repo: Path) -> list[dict]:
    result = squad(repo, "log", "--json", "--all")
    assert "Warning" not in result.stderr, result.stderr  # e.g. a renumbered record's `was`
    return json.loads(result.stdout)


def meaning(records: list[dict]) -> dict[str, tuple]:
    """Every record by title: its status, and what it accepts/rejects/supersedes and had in
    its context, by title."""
    title = {r["id"]: r["title"] for r in records}
    return {r["title"]: (r["current_status"], title.get(r["target"]),
                         sorted(title[i] for i in r["supersedes"]),
                         sorted(title[i] for i in r["inputs"]))
            for r in records}


def responder(side: str):
    def reply(request: RecordedRequest) -> ToolCalls | Text:
        if any(m["role"] == "assistant" for m in request.messages):
            return Text("Done.")
        return ToolCalls([("record_decision", {
            "title": f"{side} run decision", "context": f"From the {side} run.",
            "decision": f"{side} decides.", "consequences": "Some.", "tags": [side]})])
    return reply


def record_run(repo: Path, side: str) -> str:
    with ScriptedServer() as server:
        server.responder = responder(side)
        out = squad(repo, "run", f"Work on {side}", "--json", "--agents", "architect",
                    env={"OPENAI_BASE_URL": server.base_url}).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]["run"]


def replay_ok(repo: Path, *args: str) -> list[dict]:
    result = squad(repo, "replay", "--json", *args, check=False, env=OFFLINE)
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0 and all(v["ok"] for v in verdicts), result.stdout
    return verdicts


def verify_ok(repo: Path) -> None:
    result = squad(repo, "verify", check=False)
    assert result.returncode == 0, result.stderr


def faults(repo: Path) -> list[str]:
    result = squad(repo, "verify", "--json", check=False)
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["ok"] else 1)
    return [f"{f['path']}: {f['problem']}" for f in report["faults"]]


def work_on(repo: Path, side: str) -> dict[str, tuple]:
    """A branch's worth of decisions (ids 2 to 6 on top of the base decision): two decisions,
    an accept, a reject, a supersede of the base decision and a recorded run; returns what
    they mean, by title."""
    decide(repo, f"{side} first")
    decide(repo, f"{side} second")
    squad(repo, "accept", "2")
    squad(repo, "reject", "3", "--reason", "No.")
    squad(repo, "supersede", "1", "--title", f"{side} replaces base", "--decision", "Better.")
    record_run(repo, side)
    git(repo, "push", "-q", "-u", "origin", git(repo, "branch", "--show-current").strip())
    return meaning(log(repo))


def same_meaning(merged: dict[str, tuple], *sides: dict[str, tuple]) -> None:
    for side in sides:
        for title, meant in side.items():
            assert merged[title] == meant, title


def titles_once(records: list[dict]) -> None:
    titles = [r["title"] for r in records]
    assert len(titles) == len(set(titles))
    assert [r["id"] for r in records] == list(range(1, len(titles) + 1))


# ---- both directions, both orders ---------------------------------------------------------

SIDES = ("alpha", "beta")
TwoSides = tuple[Path, dict[str, Path], dict[str, dict[str, tuple]]]


def _two_sides(where: Path) -> dict[str, dict[str, tuple]]:
    where.mkdir()
    _origin(where / "origin.git")
    return {side: work_on(clone(where / "origin.git", side, branch=side), side)
            for side in SIDES}


@pytest.fixture
def two_sides(templates: Templates, tmp_path: Path) -> TwoSides:
    """An origin with a branch per side, each side's clone having done `work_on` and pushed;
    returns the origin, the clones (pointed at this copy of the origin) and what each side's
    records mean."""
    team, meant = templates.copy("merge-two-sides", _two_sides, tmp_path / "team")
    origin = team / "origin.git"
    clones = {side: team / side for side in SIDES}
    for path in clones.values():
        git(path, "remote", "set-url", "origin", str(origin))
        git(path, "update-index", "-q", "--refresh")
    return origin, clones, meant



@pytest.mark.slow
@pytest.mark.parametrize("direction", ["trunk", "pull-request"])
@pytest.mark.parametrize("order", [("alpha", "beta"), ("beta", "alpha")])
def test_two_branches_join_in_both_directions_and_orders(two_sides: TwoSides, direction: str,
                                                         order: tuple[str, str]) -> None:
    origin, clones, meant = two_sides
    fork = git(clones["alpha"], "rev-parse", "origin/main").strip()
    main = clone(origin, "main")
    for side in order:
        if direction == "trunk":
            git(main, "fetch", "-q")
            squad(main, "merge", f"origin/{side}")
        else:  # bring the pull request up to date, then merge it on main
            repo = clones[side]
            git(repo, "fetch", "-q")
            squad(repo, "merge", "origin/main")
            squad(repo, "merge", "--check", "origin/main")
            git(repo, "push", "-q")
            git(main, "pull", "-q", "--ff-only")
            git(main, "fetch", "-q")
            assert "fast-forwarded" in squad(main, "merge", f"origin/{side}").stdout
        git(main, "push", "-q", "origin", "main")
    verify_ok(main)
    records = log(main)
    titles_once(records)
    same_meaning(meaning(records), meant["alpha"], meant["beta"])
    for side in order:
        git(main, "merge-base", "--is-ancestor", f"origin/{side}", "HEAD")
    runs = {Path(p).name for p in git(main, "ls-tree", "--name-only", "HEAD",
                                      ".squad/runs/").split()}
    assert len(runs) == 2 and {v["run"] for v in replay_ok(main)} == runs
    assert len(replay_ok(main, "--since", fork)) == 2
    assert git(main, "status", "--porcelain") == ""
    # the first-merged side kept its ids; the other's moved, and say what they were
    # the side merged first kept ids 2-7; the other side's six records moved after them, and
    # each says what it was
    moved = [r for r in records if r["id"] > 7]
    assert len(moved) == 6 and all(r["was"] is not None for r in moved)
    assert {r["title"] for r in moved} >= {f"{order[1]} first", f"{order[1]} run decision"}
    assert all(r["was"] is None for r in records if r["id"] <= 7)


# ---- more shapes ----------------------------------------------------------------------------


def test_three_branches_one_after_another(origin: Path) -> None:
    sides = ("a", "b", "c")
    meant = []
    for side in sides:
        repo = clone(origin, side, branch=side)
        decide(repo, f"{side} one")
        decide(repo, f"{side} two", "--supersedes", "2")
        git(repo, "push", "-q", "-u", "origin", side)
        meant.append(meaning(log(repo)))
    main = clone(origin, "main")
    for side in sides:
        squad(main, "merge", f"origin/{side}")
    verify_ok(main)
    records = log(main)
    titles_once(records)
    same_meaning(meaning(records), *meant)
    assert len(records) == 7


def test_a_branch_merged_twice_appends_only_what_is_new(origin: Path) -> None:
    feature = clone(origin, "feature", branch="feature")
    main = clone(origin, "main")
    decide(feature, "Use JWT")
    decide(main, "Use Redis")
    git(main, "fetch", "-q", str(feature), "feature:feature")
    squad(main, "merge", "feature")
    assert "already up to date" in squad(main, "merge", "feature").stdout
    assert ids_by_title(main) == {"Base decision": 1, "Use Redis": 2, "Use JWT": 3}
    decide(feature, "Use JWT everywhere", "--supersedes", "2")  # 2 is "Use JWT" there
    git(main, "fetch", "-q", str(feature), "feature:feature")
    out = squad(main, "merge", "feature").stdout
    assert [line for line in out.splitlines() if line.startswith("renumbered")] == [
        "renumbered 0003 -> 0004  Use JWT everywhere"]
    verify_ok(main)
    records = log(main)
    titles_once(records)
    assert meaning(records)["Use JWT everywhere"][2] == ["Use JWT"]
    assert meaning(records)["Use JWT"][0] == "superseded"


def test_a_merge_where_ref_has_nothing_new(origin: Path) -> None:
    main = clone(origin, "main")
    other = clone(origin, "other", branch="other")
    decide(main, "Only on main")
    head = git(main, "rev-parse", "HEAD")
    assert "already up to date" in squad(main, "merge", "origin/main").stdout
    assert git(main, "rev-parse", "HEAD") == head
    # a branch that adds no record but a file: a merge commit, nothing renumbered
    (other / "notes.txt").write_text("notes\n")
    git(other, "add", "notes.txt")
    git(other, "commit", "-qm", "notes")
    git(main, "fetch", "-q", str(other), "other:other")
    out = squad(main, "merge", "other").stdout
    assert "0 record(s) appended, 0 renumbered" in out
    assert (main / "notes.txt").read_text() == "notes\n"
    assert len(git(main, "show", "-s", "--format=%P", "HEAD").split()) == 2
    verify_ok(main)


def test_a_branch_whose_records_were_renumbered_once_already(origin: Path) -> None:
    pr = clone(origin, "pr", branch="pr")
    main = clone(origin, "main")
    decide(pr, "PR decision")
    squad(pr, "accept", "2")
    decide(main, "Main decision one")
    git(main, "push", "-q", "origin", "main")
    git(pr, "fetch", "-q")
    squad(pr, "merge", "origin/main")  # the pull request's records move to 3 and 4
    was = {r["title"]: r["was"] for r in log(pr)}
    assert was["PR decision"]["id"] == 2
    decide(main, "Main decision two")  # main moves on before the pull request lands
    git(main, "fetch", "-q", str(pr), "pr:pr")
    out = squad(main, "merge", "pr").stdout
    assert "0003 -> 0004  PR decision" in out
    verify_ok(main)
    records = log(main)
    titles_once(records)
    # still named after what it first was, not after the intermediate renumbering
    assert {r["title"]: r["was"] for r in records}["PR decision"] == was["PR decision"]
    assert meaning(records)["PR decision"][0] == "accepted"


# ---- two clones on main, plain pulls ---------------------------------------------------------


@pytest.mark.parametrize("pull", [[], ["-c", "pull.rebase=false"], ["-c", "pull.rebase=true"]])
def test_two_clones_decide_on_main_and_push(origin: Path, pull: list[str]) -> None:
    ann, bob = clone(origin, "ann"), clone(origin, "bob")
    decide(ann, "Ann decides")
    decide(bob, "Bob decides")
    git(ann, "push", "-q", "origin", "main")
    pushed = subprocess.run(["git", "push", "-q", "origin", "main"], cwd=bob,
                            capture_output=True, text=True)
    assert pushed.returncode != 0 and "rejected" in pushed.stderr
    pulled = subprocess.run(["git", *pull, "pull", "-q"], cwd=bob, capture_output=True,
                            text=True)
    assert pulled.returncode != 0  # git never joins the two logs on its own
    if pull:  # git stopped half way: squad says how to get out first
        refused = squad(bob, "merge", "origin/main", check=False)
        assert refused.returncode == 3 and "--abort" in refused.stderr
    # the documented way on: abort whatever git started, then let squad join the logs
    for abort in (["merge", "--abort"], ["rebase", "--abort"]):
        subprocess.run(["git", *abort], cwd=bob, capture_output=True)
    squad(bob, "merge", "origin/main")
    verify_ok(bob)
    git(bob, "push", "-q", "origin", "main")
    assert ids_by_title(bob) == {"Base decision": 1, "Ann decides": 2, "Bob decides": 3}


def test_a_plain_git_merge_is_never_silently_broken(origin: Path) -> None:
    feature = clone(origin, "feature", branch="feature")
    decide(feature, "Use JWT")
    git(feature, "push", "-q", "-u", "origin", "feature")
    main = clone(origin, "main")
    decide(main, "Use Redis")
    git(main, "push", "-q", "origin", "main")
    # the pull request's check names the fix
    git(feature, "fetch", "-q")
    check = squad(feature, "merge", "--check", "origin/main", check=False)
    assert check.returncode == 1
    assert check.stderr.strip().splitlines() == [
        "squad: the decision log does not extend origin/main's: run `squad merge "
        "origin/main` and push the result"]
    # git itself stops on the index, which both sides changed
    merged = subprocess.run(["git", "merge", "origin/feature"], cwd=main, capture_output=True,
                            text=True)
    assert merged.returncode != 0 and "decisions/README.md" in merged.stdout
    # someone "resolves" it by hand and commits: verify names the repair
    for page in ("decisions/README.md", "decisions/000/README.md"):
        (main / page).write_text(git(main, "show", f"origin/feature:{page}"))
        git(main, "add", page)
    git(main, "commit", "-qm", "merge")
    found = faults(main)
    assert any("duplicate id 2" in f for f in found)
    assert any("squad merge <branch>" in f for f in found)
    # and the repair it names works
    git(main, "reset", "-q", "--keep", "HEAD^")
    squad(main, "merge", "origin/feature")
    verify_ok(main)


def test_a_squash_merge_is_reported_plainly(origin: Path) -> None:
    feature = clone(origin, "feature", branch="feature")
    decide(feature, "Use JWT")
    decide(feature, "Use JWT twice")
    git(feature, "switch", "-q", "main")
    git(feature, "merge", "-q", "--squash", "feature")
    git(feature, "commit", "-qm", "Squashed feature")
    found = faults(feature)
    assert found and all("needs merge commits" in f for f in found)


# ---- conflicts and the user's own work -----------------------------------------------------


def test_a_conflict_outside_decisions_stops_and_loses_nothing(origin: Path) -> None:
    feature = clone(origin, "feature", branch="feature")
    (feature / "app.py").write_text("print('feature')\n")
    git(feature, "commit", "-qam", "feature app")
    decide(feature, "Use JWT")
    main = clone(origin, "main")
    (main / "app.py").write_text("print('main')\n")
    git(main, "commit", "-qam", "main app")
    decide(main, "Use Redis")
    (main / "scratch.txt").write_text("mine\n")  # untracked
    git(main, "fetch", "-q", str(feature), "feature:feature")
    result = squad(main, "merge", "feature", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "squad: merge feature: git could not merge app.py: the decision log is already joined "
        "and staged; resolve those files, `git add` them and `git commit` (or `git merge "
        "--abort` to go back)")
    status = git(main, "status", "--porcelain").splitlines()
    assert "UU app.py" in status
    assert sorted(line for line in status if "decisions/" in line) == [
        "A  decisions/000/0003-use-jwt.md", "M  decisions/000/README.md",
        "M  decisions/README.md"]
    assert "print('main')" in (main / "app.py").read_text()
    assert "print('feature')" in (main / "app.py").read_text()
    assert (main / "scratch.txt").read_text() == "mine\n"
    # the documented way on
    (main / "app.py").write_text("print('both')\n")
    git(main, "add", "app.py")
    git(main, "commit", "-q", "--no-edit")
    verify_ok(main)
    assert ids_by_title(main) == {"Base decision": 1, "Use Redis": 2, "Use JWT": 3}
    git(main, "merge-base", "--is-ancestor", "feature", "HEAD")
    # and the other way out leaves nothing behind
    other = clone(origin, "other")
    (other / "app.py").write_text("print('other')\n")
    git(other, "commit", "-qam", "other app")
    decide(other, "Use Kafka")
    head = git(other, "rev-parse", "HEAD")
    git(other, "fetch", "-q", str(feature), "feature:feature")
    assert squad(other, "merge", "feature", check=False).returncode == 1
    git(other, "merge", "--abort")
    assert git(other, "rev-parse", "HEAD") == head
    assert git(other, "status", "--porcelain") == ""
    verify_ok(other)


def test_the_users_work_is_untouched_or_refused(origin: Path) -> None:
    feature = clone(origin, "feature", branch="feature")
    decide(feature, "Use JWT")
    (feature / "app.py").write_text("print('feature')\n")
    git(feature, "commit", "-qam", "feature app")
    main = clone(origin, "main")
    decide(main, "Use Redis")
    git(main, "fetch", "-q", str(feature), "feature:feature")
    (main / "staged.txt").write_text("staged\n")
    git(main, "add", "staged.txt")
    (main / "squad.toml").write_text((main / "squad.toml").read_text() + "# unstaged\n")
    (main / "untracked.txt").write_text("untracked\n")
    # an unstaged edit of a file the merge changes: refused like git, nothing changed
    (main / "app.py").write_text("print('mine')\n")
    head = git(main, "rev-parse", "HEAD")
    refused = squad(main, "merge", "feature", check=False)
    assert refused.returncode == 3 and "app.py" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert git(main, "rev-parse", "HEAD") == head
    assert (main / "app.py").read_text() == "print('mine')\n"
    # an edit of squad's own files: refused too
    git(main, "checkout", "app.py")
    index = main / "decisions/README.md"
    index.write_text(index.read_text() + "my note\n")
    refused = squad(main, "merge", "feature", check=False)
    assert refused.returncode == 3 and "decisions/README.md" in refused.stderr
    assert index.read_text().endswith("my note\n")
    git(main, "checkout", "decisions/README.md")
    # otherwise the merge goes through and every other change stays as it was
    squad(main, "merge", "feature")
    assert git(main, "diff", "--cached", "--name-only").split() == ["staged.txt"]
    assert git(main, "diff", "--name-only").split() == ["squad.toml"]
    assert (main / "squad.toml").read_text().endswith("# unstaged\n")
    assert (main / "untracked.txt").read_text() == "untracked\n"
    assert (main / "app.py").read_text() == "print('feature')\n"
    verify_ok(main)


# ---- the log's integrity across merges -------------------------------------------------------


def _amend_merge(repo: Path, path: str, edit) -> None:
    target = repo / path
    target.write_text(edit(target.read_text()))
    git(repo, "add", path)
    git(repo, "commit", "-q", "--amend", "--no-edit")


def test_a_record_rewritten_inside_a_merge_commit_fails(origin: Path) -> None:
    feature = clone(origin, "feature", branch="feature")
    decide(feature, "Use JWT")
    main = clone(origin, "main")
    decide(main, "Use Redis")
    decide(main, "Use Redis clusters")
    git(main, "fetch", "-q", str(feature), "feature:feature")
    squad(main, "merge", "feature")
    verify_ok(main)
    merged = git(main, "rev-parse", "HEAD").strip()
    # rewrite main's own record 2 inside the merge commit and fix up the chain after it
    from squad.records import digest

    folder = main / "decisions" / "000"
    path = folder / "0002-use-redis.md"
    path.write_text(path.read_text().replace("Use Redis.", "Use Memcached."))
    names = ["0002-use-redis.md", "0003-use-redis-clusters.md", "0004-use-jwt.md"]
    for before, later in itertools.pairwise(names):
        text = (folder / later).read_text()
        old = next(line for line in text.splitlines() if line.startswith("prev: "))
        (folder / later).write_text(
            text.replace(old, f"prev: {digest((folder / before).read_bytes())}"))
    git(main, "add", "decisions")
    git(main, "commit", "-q", "--amend", "--no-edit")
    found = faults(main)
    assert any(f.startswith("decisions/000/0002-use-redis.md: added or changed by merge commit")
               for f in found)
    # a renumbered record edited inside the merge: its renumbering no longer holds
    git(main, "reset", "-q", "--hard", merged)
    verify_ok(main)
    _amend_merge(main, "decisions/000/0004-use-jwt.md",
                 lambda t: t.replace("Use JWT.", "Use JWT, signed by us."))
    found = faults(main)
    assert any("0004-use-jwt.md: renumbered from 0002" in f and "decision differs" in f
               for f in found)


def test_forged_trailers_and_dates_going_backwards_fail(origin: Path) -> None:
    main = clone(origin, "main")
    decide(main, "Second")
    text = (main / "decisions/000/0002-second.md").read_text()
    from squad.records import digest

    def forge(name: str, title: str, date: str, trailer: str) -> None:
        last = sorted((main / "decisions").glob("*/000*.md"))[-1]
        body = text.replace("id: 2", f"id: {int(name[:4])}").replace("Second", title)
        body = body.replace(next(x for x in body.splitlines() if x.startswith("date: ")),
                            f"date: '{date}'")
        body = body.replace(next(x for x in body.splitlines() if x.startswith("prev: ")),
                            f"prev: {digest(last.read_bytes())}")
        (main / "decisions" / "000" / name).write_text(body)
        git(main, "add", f"decisions/000/{name}")
        git(main, "commit", "-qm", f"{title}\n\nSquad-Decision: {trailer}\nSquad-Agent: x\n")

    forge("0003-third.md", "Third", "2000-01-01T00:00:00Z", "0003")
    found = faults(main)
    assert any(f.startswith("decisions/000/0003-third.md: dated 2000-01-01T00:00:00Z, before")
               for f in found)
    git(main, "reset", "-q", "--hard", "HEAD^")
    forge("0003-third.md", "Third", "2100-01-01T00:00:00Z", "0002")
    found = faults(main)
    assert any("trailer names 0002, not the record(s) it adds" in f for f in found)


def test_a_record_whose_run_was_removed_fails(origin: Path) -> None:
    main = clone(origin, "main")
    run_id = record_run(main, "main")
    verify_ok(main)
    git(main, "rm", "-rq", f".squad/runs/{run_id}")
    git(main, "commit", "-qm", "drop the run")
    assert any(f"names run {run_id}, which is not recorded" in f for f in faults(main))


# ---- the CI workflow ---------------------------------------------------------------------------


@pytest.mark.parametrize("install", [None, 'pip install "git+https://example.com/squad.git@v1"'])
def test_the_workflow_passes_githubs_schema(repo: Path, install: str | None) -> None:
    from squad import __version__

    squad(repo, "init", "--no-agents", "--ci", "github",
          *(["--install", install] if install else []))
    workflow = repo / ".github/workflows/squad.yml"
    tool = Path(sys.executable).parent / "check-jsonschema"
    checked = subprocess.run([str(tool), "--builtin-schema", "vendor.github-workflows",
                              str(workflow)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    import yaml

    data = yaml.safe_load(workflow.read_text())
    steps = {step["name"]: step for step in data["jobs"]["verify-and-replay"]["steps"]}
    expected = install or f'pip install "squad-decisions=={__version__}"'
    assert steps["Install squad"]["run"] == expected
    assert data[True]["push"]["branches"] == ["main"]  # YAML reads the key `on` as True
    assert "pull_request" in data[True]
    assert 'squad merge --check "$BASE"' in steps[
        "Check that the log extends the base branch's"]["run"]
    assert "squad==" not in workflow.read_text()


def test_install_needs_ci(repo: Path) -> None:
    result = squad(repo, "init", "--install", "pip install x", check=False)
    assert result.returncode == 2 and "use it with --ci" in result.stderr


def test_was_is_left_out_unless_set_and_no_drop_may_set_it() -> None:
    from datetime import UTC, datetime

    from squad.errors import RecordError
    from squad.records import Origin, Record, parse_draft, parse_record, render

    plain = Record(id=2, title="t", agent="a", decision="d", date=datetime(2026, 1, 1, tzinfo=UTC))
    assert "was:" not in render(plain)
    moved = plain.model_copy(update={"id": 3, "was": Origin(id=2, commit="ab" * 20)})
    text = render(moved)
    assert f"was: {{id: 2, commit: {'ab' * 20}}}" in text.replace("'", "")
    assert parse_record(text) == moved
    drop = render(plain).replace("id: 2\n", "").replace("date: '2026-01-01T00:00:00Z'\n", "")
    drop = drop.replace("prev: null\n", f"was: {{id: 2, commit: {'ab' * 20}}}\n")
    with pytest.raises(RecordError, match="a drop may not set was"):
        parse_draft(drop)


def test_the_trunk_can_be_named_in_squad_toml(origin: Path) -> None:
    """With `[repo] trunk = "develop"`, develop's records keep their ids even when develop
    is merged into another branch; a forged `was` naming no real commit fails verify."""
    repo = clone(origin, "repo")
    (repo / "squad.toml").write_text((repo / "squad.toml").read_text()
                                     + "[repo]\ntrunk = 'develop'\n")
    git(repo, "commit", "-qam", "develop is the trunk")
    git(repo, "branch", "develop")
    git(repo, "switch", "-qc", "topic")
    decide(repo, "On topic")
    git(repo, "switch", "-q", "develop")
    decide(repo, "On develop")
    git(repo, "switch", "-q", "topic")
    out = squad(repo, "merge", "develop").stdout
    assert "renumbered 0002 -> 0003  On topic" in out
    assert ids_by_title(repo) == {"Base decision": 1, "On develop": 2, "On topic": 3}
    path = repo / "decisions/000/0003-on-topic.md"
    text = path.read_text()
    sha = text.split("commit: ", 1)[1][:40]
    path.write_text(text.replace(sha, "ab" * 20))
    git(repo, "commit", "-qam", "forge")
    assert any("0003-on-topic.md: renumbered from 0002 in commit abababababab, which does not "
               "hold such a record" in f for f in faults(repo))
