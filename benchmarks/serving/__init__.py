"""Benchmark of the game-server API in the production configuration, run by `benchmarks/run`.

PostgreSQL records, a Redis live store of its own, the partner simulator over HTTP, `playwave
serve --workers N` and one `playwave worker`, all on loopback, loaded by `wrk`. Every headline
figure is a ratio of two measurements taken side by side in one run; see docs/benchmarks.md.
"""
