"""Status reads with accounts on (`DARKROOM_AUTH=on`): what the bearer key costs.

A second API stack runs with accounts on. Its user and API key are made headlessly with the
CLI, as an operator makes them (`flask users create`, `flask keys create`), and its status
jobs are submitted with that key, so they are the key's user's own. Status reads with the
key are measured in rounds against the same reads on bench/prepare.py's API stack, which
has accounts off: the two runs of a round come one after the other, in the order swapped
every round, so that whatever else the machine does weighs on both alike. The SQL
statements of one request of each kind are counted in a process of their own
(bench/statements.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import requests

from bench import prepare
from bench.harness import ROOT, SETTLE_SECONDS, Bench, log, status_paths
from bench.load import Spec
from tests.procs import Stack

USER = "bench"
PASSWORD = "bench password, loopback only"  # a throwaway instance in the temporary folder
SCOPES = ("read", "generate")
ACCOUNTS_ON = {"DARKROOM_AUTH": "on"}
SETUP_SECONDS = 40  # the CLI twice, a stack started, its jobs run, statements counted


def cost(bench: Bench) -> float:
    """About how many seconds the phase takes."""
    a = bench.args
    return SETUP_SECONDS + 2 * (rounds(bench) + 1) * (a.duration + 0.3 + SETTLE_SECONDS)


def rounds(bench: Bench) -> int:
    """Rounds of this phase: as many as the main figures. Three were too few on this kind of
    machine: the same status read ranged from 816 to 1,187 req/s between rounds, and the
    median of three moved the ratio from 100% to 78% between two runs of the same code."""
    return int(bench.args.rounds)


def flask(stack: Stack, *args: str, stdin: str | None = None) -> str:
    """Run `flask --app wsgi ARGS` with the stack's environment; its standard output."""
    done = stack.flask(*args, stdin=stdin or "", timeout=60)
    if done.returncode:
        raise RuntimeError(f"flask {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def keyed_stack(bench: Bench) -> tuple[Stack, dict[str, str]]:
    """A running stack with accounts on, an administrator, and the header of their key.

    The key has the `read` and `generate` scopes, not `admin`: its requests see only the
    user's own jobs, the owner-filtered status read that every ordinary client makes.
    """
    stack = bench.stack("api-accounts", env=ACCOUNTS_ON)
    # Before the web starts, so that the CLI's migration of the new database is the only one.
    flask(stack, "users", "create", USER, "--admin", stdin=PASSWORD + "\n")
    scopes = [arg for scope in SCOPES for arg in ("--scope", scope)]
    out = flask(stack, "keys", "create", "--user", USER, "--name", "bench", *scopes)
    header = {"Authorization": f"Bearer {out.strip().splitlines()[-1].strip()}"}
    stack.http.headers.update(header)  # the stack's own requests (submissions) carry the key
    bench.start(stack)
    return stack, header


def check_keyed(stack: Stack, path: str) -> None:
    """The key reads the job and a request without it is refused: accounts are really on."""
    with_key = stack.get(path)
    without = requests.get(stack.url(path), timeout=10)  # not the stack's session: no key
    if with_key.status_code != 200 or without.status_code != 401:
        raise RuntimeError(
            f"status with the key answered {with_key.status_code}, without it "
            f"{without.status_code} (expected 200 and 401)\n{stack.logs()}"
        )


def count_statements(asked: dict[str, tuple[Stack, str, dict[str, str]]]) -> dict[str, Any]:
    """The SQL statements of one GET on each stack's app, counted side by side.

    Each count is a process of its own (bench/statements.py) with its stack's environment; a
    count that fails is logged and left out, the figure does not depend on it.
    """
    procs = {}
    for name, (stack, path, headers) in asked.items():
        env = dict(stack.env)
        if "Authorization" in headers:
            env["BENCH_AUTHORIZATION"] = headers["Authorization"]
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "bench.statements", path],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    found: dict[str, Any] = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        if proc.returncode:
            log(f"counting the statements of {name} failed ({proc.returncode}): {err[-500:]}")
            continue
        found[name] = json.loads(out.strip().splitlines()[-1])
    return found


def measure(bench: Bench, api: Stack, status_ids: list[str]) -> None:
    """Status with a bearer key against status with accounts off: interleaved rounds."""
    a = bench.args
    keyed, header = keyed_stack(bench)
    try:
        keyed_ids = prepare.status_jobs(keyed)
        check_keyed(keyed, status_paths(keyed_ids)[0])
        specs = {
            "status": (api, Spec.get(*status_paths(status_ids))),
            "status_key": (keyed, Spec.get(*status_paths(keyed_ids), headers=header)),
        }
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in specs}
        for stack, spec in specs.values():  # warm-up, not recorded
            bench.load(stack, spec, a.connections, 1)
        for rnd in range(rounds(bench)):
            order = list(specs) if rnd % 2 == 0 else list(reversed(specs))
            for name in order:
                stack, spec = specs[name]
                runs[name].append(bench.load(stack, spec, a.connections, a.duration).as_dict())
            off, on = runs["status"][-1], runs["status_key"][-1]
            log(
                f"round {rnd + 1} status with a key: {on['rps']:.0f} req/s vs "
                f"{off['rps']:.0f} with accounts off, errors {on['errors'] + off['errors']}"
            )
        counted = count_statements(
            {
                "status": (api, status_paths(status_ids)[0], {}),
                "status_key": (keyed, status_paths(keyed_ids)[0], header),
            }
        )
    finally:
        bench.close_stack(keyed)
    bench.results["status_key"] = {"jobs": len(keyed_ids), "runs": runs, "statements": counted}
    if counted:
        log(
            "SQL statements per status read: "
            + ", ".join(f"{k} {len(v['statements'])}" for k, v in counted.items())
        )
