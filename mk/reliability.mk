# mk/reliability.mk - fuzzing, ThreadSanitizer and the load test (included by the Makefile).
#   make fuzz       every libFuzzer target for FUZZ_SECONDS each (FUZZ_TARGETS="a b" for some)
#   make fuzz-build only build them (build-fuzz/fuzz_<target>)
#   make tsan       the unit tests and integration scripts built with -fsanitize=thread
#   make loadtest   the load generator against a daemon for LOAD_SECONDS (see docs/RELIABILITY.md)

FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?= gguf tokenizer openai anthropic sse client_dec config toolcall chat jsonc
# extra libFuzzer flags, e.g. FUZZ_FLAGS=-jobs=2
FUZZ_FLAGS   ?=
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -march=x86-64-v2 -Isrc -Wall -Wno-unused-parameter \
                $(shell pkg-config --cflags libpcre2-8 jansson 2>/dev/null)
FUZZ_LIBS    := $(shell pkg-config --libs libpcre2-8 jansson 2>/dev/null) -lpthread -lm
# the parsers live in base, engine and proto; the server and CLI are not needed
FUZZ_SRC     := $(wildcard src/base/*.c src/engine/*.c src/proto/*.c)
FUZZ_OBJ     := $(FUZZ_SRC:%.c=$(FUZZ_BUILD)/%.o)
# SIMD kernels use GCC-only target pragmas and parse nothing: built by $(CC) without sanitizers
FUZZ_PLAIN   := $(filter $(FUZZ_BUILD)/src/engine/quant_x86.o,$(FUZZ_OBJ))
FUZZ_BIN     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-build tsan loadtest

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_PLAIN): $(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -g -O2 -march=x86-64-v2 -Isrc -MMD -MP -c $< -o $@

.SECONDARY: $(FUZZ_OBJ)

$(FUZZ_BUILD)/fuzz_%: fuzz/driver.c fuzz/entries.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -DFZ_NAME='"$*"' -o $@ \
	    fuzz/driver.c $(FUZZ_OBJ) $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BIN)

# New inputs go to $(FUZZ_BUILD)/corpus/<target> (the committed fuzz/corpus is only read);
# a crash leaves $(FUZZ_BUILD)/crash-<target>-* and stops the run with a failure.
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	    dict=; [ -f fuzz/dict/$$t.dict ] && dict=-dict=fuzz/dict/$$t.dict; \
	    echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	    ASAN_OPTIONS=detect_leaks=1 $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	        -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 $$dict \
	        -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- $(FUZZ_FLAGS) \
	        $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t 2>$(FUZZ_BUILD)/fuzz_$$t.log \
	        || { tail -60 $(FUZZ_BUILD)/fuzz_$$t.log; exit 1; }; \
	    grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added' \
	        $(FUZZ_BUILD)/fuzz_$$t.log | tr '\n' ' '; echo; \
	done

-include $(FUZZ_OBJ:.o=.d)

# ThreadSanitizer: reports go to build-tsan/tsan.<pid> (the daemon's included); any report fails.
TSAN_BUILD ?= build-tsan
tsan:
	@rm -f $(TSAN_BUILD)/tsan.*
	TSAN_OPTIONS="log_path=$(CURDIR)/$(TSAN_BUILD)/tsan second_deadlock_stack=1 $(TSAN_EXTRA)" \
	    $(MAKE) BUILD=$(TSAN_BUILD) OPT=-O1 SAN="-fsanitize=thread -fno-omit-frame-pointer" test
	@if ls $(TSAN_BUILD)/tsan.* >/dev/null 2>&1; then \
	    echo "tsan: reports in $(TSAN_BUILD)/tsan.*:"; grep -h 'SUMMARY' $(TSAN_BUILD)/tsan.* | sort | uniq -c; exit 1; \
	else echo "tsan: no reports"; fi

# The load test: a daemon with a small synthetic model, LOAD_SECONDS of load in LOAD_ROUNDS
# rounds (LOAD_CLIENTS streaming clients, LOAD_IDLE idle sockets, disconnect storm, slow clients).
LOAD_SECONDS ?= 60
LOAD_ROUNDS  ?= 6
LOAD_CLIENTS ?= 8
LOAD_IDLE    ?= 200
$(BUILD)/loadgen: bench/loadgen.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g -o $@ $< -lpthread -lm

loadtest: $(BUILD)/shammah $(BUILD)/loadgen
	BUILD=$(BUILD) LOADGEN=$(BUILD)/loadgen LOAD_SECONDS=$(LOAD_SECONDS) LOAD_ROUNDS=$(LOAD_ROUNDS) \
	    LOAD_CLIENTS=$(LOAD_CLIENTS) LOAD_IDLE=$(LOAD_IDLE) sh tests/integration/load.sh
