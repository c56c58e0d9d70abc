# Thin wrapper over CMake. `make run` and `make test` are the two entry points (README.md).
BUILD      ?= build
STATE_DIR  ?= ./var
LISTEN     ?= 127.0.0.1:8080
CHALLENGE  ?=
CMAKE_OPTS ?=
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
MAKEFLAGS  += --no-print-directory

.PHONY: all deps build run test test-asan bench fuzz deb clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_OPTS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@STATE_DIR="$(STATE_DIR)" LISTEN="$(LISTEN)" CHALLENGE="$(CHALLENGE)" BUILD="$(BUILD)" scripts/run.sh

# A test that fails is run once more, alone, and reported as FLAKY when it then passes: the
# run stays green but the log names it (docs/testing.md, "Flaky tests"). A second failure fails.
# The rerun rewrites Testing/Temporary/LastTest.log: first it is kept as LastTest-first.log,
# and the whole first-run output of each failed test (its section of that log, named in
# LastTestsFailed.log as "N:name") is printed, so that the CI log says why it failed.
RERUN = { cp Testing/Temporary/LastTest.log Testing/Temporary/LastTest-first.log; \
  echo "== FAILED: the first run's output of the failed tests (Testing/Temporary/LastTest-first.log) =="; \
  awk 'NR == FNR { sub(/^[0-9]*:/, ""); failed[$$0] = 1; next }; \
    /^[0-9]+\/[0-9]+ Testing: / { t = $$0; sub(/^[0-9]+\/[0-9]+ Testing: /, "", t); p = (t in failed) }; \
    p { print }; /^"[^"]*" time elapsed: / { p = 0 }' \
    Testing/Temporary/LastTestsFailed.log Testing/Temporary/LastTest-first.log; \
  echo "== FLAKY? rerunning the failed tests once, alone =="; \
  ctest --rerun-failed --output-on-failure --timeout 900 && \
  echo "== FLAKY: the tests above failed once and passed alone: fix them =="; }

test: build
	@cd $(BUILD) && { ctest --output-on-failure -j 2 --timeout 600 || $(RERUN); }

# The whole suite under AddressSanitizer + UBSan (CI runs this too): unit tests, fuzz-corpus
# replays, and the integration tests against an ASan-built scepd/scepctl, whose shutdown must
# be clean (tests/integration/lib.sh fails a test on any sanitizer report or leak).
test-asan: deps
	@cmake -S . -B build-asan -DSCEPD_ASAN=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && export ASAN_OPTIONS=detect_leaks=1 && { ctest --output-on-failure -j 2 --timeout 900 -L 'unit|fuzz|integration' || $(RERUN); }

# Deliberate, test-only breakages (tests/mutants/mutants.list), each built in
# build-mutant-<name>/ and run against the suite: prints which tests kill each mutant
# (docs/testing-mutants.md). Not part of CI, it takes a while. MUTANTS="NOSYNC ..." picks some.
.PHONY: test-mutants
test-mutants: deps
	@tests/mutants/run.sh $(MUTANTS)

# The whole benchmark: the closed/open-loop legs against scepd and the peer servers, the
# network-HSM leg (bench/run.sh), then the PostgreSQL legs (bench/pg.sh). NO_PG=1 skips those.
bench: build
	@bench/run.sh $(if $(FULL),--full,)
	@$(if $(NO_PG),true,bench/pg.sh $(if $(FULL),--rounds 2,))

# Before/after of the performance work (bench/compare.sh, docs/benchmarks.md "Performance"):
# BASE (default 43e256a) against this tree in one run, ABBA pairs; FULL=1: c = 1 4 16 64 256.
.PHONY: bench-compare
bench-compare: build
	@bench/compare.sh $(if $(FULL),--full,)

# The PostgreSQL legs (bench/pg.sh, docs/benchmarks.md "PostgreSQL"): one node on LMDB vs
# PostgreSQL with the same keys, and two nodes behind HAProxy; CPU per enrollment by process.
.PHONY: bench-pg
bench-pg: build
	@bench/pg.sh $(if $(FULL),--rounds 2,)

# libFuzzer targets (clang): every library they link is instrumented too. fuzz-run (not CI)
# runs each target FUZZ_SECONDS (default 300) in turn and prints executions, edges, corpus
# and findings per target; new inputs go to a scratch folder (tests/fuzz/run.sh, docs/fuzzing.md).
FUZZ_SECONDS ?= 300

fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DSCEPD_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

.PHONY: fuzz-run
fuzz-run: fuzz
	@FUZZ_BUILD=build-fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

# The Debian package, built in its own directory (prefix /usr, dpkg-buildflags hardening):
# packaging/build-deb.sh, docs/packaging.md.
DEB_BUILD ?= build-deb
deb: deps
	@packaging/build-deb.sh $(DEB_BUILD) $(JOBS)

clean:
	rm -rf $(BUILD) build-asan build-fuzz
