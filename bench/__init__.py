"""skiff benchmarks: ratios against peers (docker, podman, bare runc) measured in the same run.

Run from the repository root as modules, e.g. ``.venv/bin/python -m bench.run_latency --runs 30``,
or all of them with ``make bench``. Results land in ``bench/results/*.json``; ``bench.report``
merges them into ``docs/benchmarks.md``.
"""
