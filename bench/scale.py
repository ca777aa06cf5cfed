#!/usr/bin/env python3
"""Benchmark: build machines sharing their packages through one registry.

Four build "machines" (separate content stores, separate processes, run at once) share
one loopback docker-registry and build the packages of `make packages` (every pkg/* and
kernels/* recipe) with `pkg build --cache-from REGISTRY/pkgs --push`: a package another
machine has pushed is pulled, not built. Against that:

- an isolated machine: one store, no registry, everything built (four isolated machines
  do four times its work);
- a late joiner: a fifth store after the four, which pulls everything.

Duplicates: each machine checks the registry just before building a recipe, and the
machines walk the recipes in staggered orders (machine i starts a quarter of the list
further on), so they build different packages at the same moment and come around to
what the others pushed. A recipe two machines start before either has pushed it is
still built twice: the run counts and prints those, it does not hide them.

Work is CPU seconds (user + system of osbuilder and everything it runs: mmdebstrap,
apt, gzip) from wait4, and wall time. A fleet of N machines, by the same figures: N
isolated builds, against one build of everything plus N-1 pulls of everything.
Several minutes: it runs mmdebstrap for every recipe, twice at least.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import OSBUILDER, byte_compile  # noqa: E402
from osbuilder.trust.keys import generate_key_pair, key_files  # noqa: E402
from tests.integration.registry import running_registry  # noqa: E402

MACHINES = 4
FLEETS = (4, 10, 100, 1000)


@dataclass
class Run:
    name: str
    cpu: float = 0.0  # seconds, user + system, with every process it waited for
    wall: float = 0.0
    results: list[dict[str, object]] = field(default_factory=list)

    def count(self, source: str) -> int:
        return sum(1 for r in self.results if r["source"] == source)


def recipes() -> list[str]:
    return sorted(
        str(recipe.parent.relative_to(REPO))
        for pattern in ("pkg/*/build.yml", "kernels/*/build.yml")
        for recipe in REPO.glob(pattern)
    )


def staggered(items: list[str], machine: int, machines: int) -> list[str]:
    start = machine * len(items) // machines
    return items[start:] + items[:start]


def start(
    name: str, store: Path, recipe_dirs: list[str], options: list[str], log: Path
) -> tuple[Run, subprocess.Popen[bytes], float]:
    command = [*OSBUILDER, "pkg", "build", "--json", "--refresh-missing", "--cache", str(store)]
    process = subprocess.Popen(
        [*command, *options, *recipe_dirs],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        env={**os.environ, "OSBUILDER_KEY_PASSWORD": ""},
    )
    return Run(name), process, time.perf_counter()


def finish(run: Run, process: subprocess.Popen[bytes], began: float, log: Path) -> Run:
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    run.wall = time.perf_counter() - began
    run.cpu = usage.ru_utime + usage.ru_stime
    if process.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"{run.name}: pkg build failed:\n" + "\n".join(tail))
    run.results = json.loads(output)
    return run


def run_all(jobs: list[tuple[str, Path, list[str], list[str]]], logs: Path) -> list[Run]:
    """Start every job at once; wait for all."""
    started = [
        (start(name, store, dirs, options, logs / f"{name}.log"), logs / f"{name}.log")
        for name, store, dirs, options in jobs
    ]
    return [finish(run, process, began, log) for (run, process, began), log in started]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=MACHINES)
    parser.add_argument("--work", type=Path, help="keep stores and logs here (default: temp)")
    parser.add_argument("recipes", nargs="*", help="recipe directories (default: pkg/* kernels/*)")
    args = parser.parse_args()
    byte_compile()
    dirs = args.recipes or recipes()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        generate_key_pair(work / "builders", b"")
        sign = ["--sign-key", str(key_files(work / "builders").private)]

        print(f"{len(dirs)} recipes ({', '.join(dirs)}); {os.cpu_count()} CPUs", flush=True)
        [isolated] = run_all([("isolated", work / "isolated", dirs, sign)], work)
        print(f"isolated machine: {_figures(isolated)}", flush=True)

        with running_registry(work / "registry") as registry:
            namespace = f"{registry.host}/pkgs"
            shared_options = [*sign, "--cache-from", namespace, "--push"]
            machines = run_all(
                [
                    (
                        f"machine-{i + 1}",
                        work / f"machine-{i + 1}",
                        staggered(dirs, i, args.machines),
                        shared_options,
                    )
                    for i in range(args.machines)
                ],
                work,
            )
            [joiner] = run_all(
                [("joiner", work / "joiner", dirs, ["--cache-from", namespace])], work
            )
        report(dirs, isolated, machines, joiner)
    return 0


def _figures(run: Run) -> str:
    return (
        f"CPU {run.cpu:7.1f} s, wall {run.wall:6.1f} s; built {run.count('built')}, "
        f"pulled {run.count('pulled')}, up to date {run.count('store')}"
    )


def report(dirs: list[str], isolated: Run, machines: list[Run], joiner: Run) -> None:
    n = len(machines)
    for run in machines:
        print(f"{run.name}: {_figures(run)}")
    print(f"late joiner: {_figures(joiner)}")
    builders: dict[str, list[str]] = {}
    for run in machines:
        for result in run.results:
            if result["source"] == "built":
                builders.setdefault(str(result["reference"]), []).append(run.name)
    twice = {ref: names for ref, names in builders.items() if len(names) > 1}
    same = sum(1 for run in machines for r in run.results if r.get("alreadyShared"))
    shared_cpu = sum(r.cpu for r in machines)
    shared_wall = max(r.wall for r in machines)
    print()
    print(
        f"shared, {n} machines: CPU {shared_cpu:.1f} s, wall {shared_wall:.1f} s; "
        f"{sum(len(v) for v in builders.values())} builds of {len(dirs)} recipes "
        f"({len(twice)} built more than once{': ' if twice else ''}"
        + "; ".join(f"{ref} by {', '.join(names)}" for ref, names in twice.items())
        + f"); {same} builds found their very image pushed meanwhile and did not push it"
    )
    print(
        f"isolated, {n} machines: CPU {n * isolated.cpu:.1f} s, wall {isolated.wall:.1f} s "
        f"each on its own hardware; shared/isolated work: {shared_cpu / (n * isolated.cpu):.2f}"
    )
    print()
    print("a fleet of N machines, by these figures (CPU seconds):")
    print("      N     isolated  shared: 1 build + N-1 pulls   ratio")
    for fleet in FLEETS:
        alone = fleet * isolated.cpu
        together = isolated.cpu + (fleet - 1) * joiner.cpu
        print(f"  {fleet:5d}  {alone:11.0f}  {together:28.0f}  {together / alone:6.3f}")
    print(
        f"(one build of everything: {isolated.cpu:.1f} s CPU; one pull of everything: "
        f"{joiner.cpu:.1f} s CPU, {joiner.wall:.1f} s wall)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
