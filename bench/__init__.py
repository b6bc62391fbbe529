"""`make bench`: Darkroom's speed and cost, measured against baselines built in the same run.

`python -m bench.run` starts the Procfile's processes (and baseline apps under the same
gunicorn command line) on free loopback ports with temporary instance folders, drives them
with wrk (or a Python load generator when wrk is missing), and writes docs/benchmarks.md
and docs/bench-*.png. Nothing here is collected by pytest (testpaths is tests/).
"""
