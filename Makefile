# make test: every test (scripts/test.sh, what CI runs).
# make bench: the benchmarks of docs/PERFORMANCE.md (scripts/bench.sh; BENCH_ROUNDS,
# BENCH_SECONDS and the other BENCH_* variables of that script size the run).
.PHONY: test bench

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh
