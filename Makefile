# shammah - build, test, sanitizers, benchmarks.
# `make` builds build/shammah; `make test` runs every test; `make asan` runs them under ASan+UBSan.

CC      ?= gcc
BUILD   ?= build
PKGS    := libpcre2-8 jansson libmicrohttpd sqlite3 libcurl libedit
OPT     ?= -O2
ARCHFLAGS ?= -march=x86-64-v2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -g -Isrc \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS  ?=
ALL_CFLAGS := $(CFLAGS_BASE) $(OPT) $(ARCHFLAGS) $(CFLAGS) $(SAN)
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
TEST_LIBS := -lcmocka

LIB_SRC := $(wildcard src/base/*.c src/engine/*.c src/proto/*.c src/server/*.c src/client/*.c src/router/*.c src/train/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

DEB_PKGS := build-essential pkg-config libpcre2-dev libjansson-dev libcmocka-dev \
            libmicrohttpd-dev libcurl4-openssl-dev libedit-dev libsqlite3-dev curl tmux

.PHONY: all test unit asan deps clean check-reference bench fixtures format run default-model train-bench

all: $(BUILD)/shammah

# The embedded default model, linked in when present (src/engine/builtin.h).
BUILTIN_MODEL := $(wildcard models/shammah-default.gguf)
$(BUILD)/src/engine/builtin.o: ALL_CFLAGS += $(if $(BUILTIN_MODEL),-DSH_BUILTIN_MODEL_FILE='"$(abspath $(BUILTIN_MODEL))"')
$(BUILD)/src/engine/builtin.o: $(BUILTIN_MODEL)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libshammah.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/shammah: $(CLI_OBJ) $(BUILD)/libshammah.a
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libshammah.a $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libshammah.a tests/unit/testutil.h tests/unit/proto_testutil.h tests/unit/synthutil.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(BUILD)/libshammah.a $(LIBS) $(TEST_LIBS)

# test_tools also needs src/cli/tools.o, which is not in the library
$(BUILD)/tests/test_tools: tests/unit/test_tools.c $(BUILD)/src/cli/tools.o $(BUILD)/libshammah.a tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(BUILD)/src/cli/tools.o $(BUILD)/libshammah.a $(LIBS) $(TEST_LIBS)

unit: $(TEST_BIN)

test: $(BUILD)/shammah $(TEST_BIN)
	@BUILD=$(BUILD) sh tests/run.sh

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" test

deps:
	@if dpkg -s $(DEB_PKGS) >/dev/null 2>&1; then echo "deps: all installed"; else \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(DEB_PKGS); fi

# Re-run the comparison against llama.cpp live (needs ../shared/reference set up).
check-reference: $(BUILD)/shammah $(BUILD)/tests/test_reference
	sh tests/reference/check.sh $(BUILD)/shammah

# Regenerate the stored reference fixtures with llama.cpp.
fixtures: $(BUILD)/shammah
	sh tests/reference/make_fixtures.sh $(BUILD)/shammah

format:
	clang-format -i $(LIB_SRC) $(CLI_SRC) $(wildcard src/*/*.h) $(TEST_SRC)

clean:
	rm -rf build build-asan

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# fuzz, tsan, loadtest
include mk/reliability.mk

# One kernel on one thread, best of many runs (bench/kbench.c)
$(BUILD)/kbench: bench/kbench.c $(BUILD)/libshammah.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libshammah.a $(LIBS)

# Speed against llama.cpp (alternating runs, medians, ratios); see bench/run.sh for settings.
bench: $(BUILD)/shammah $(BUILD)/kbench
	SHAMMAH=$(BUILD)/shammah sh bench/run.sh

# LoRA training speed and what a training run in the daemon costs serving (docs/PERFORMANCE.md)
train-bench: $(BUILD)/shammah
	SHAMMAH=$(BUILD)/shammah sh bench/train_impact.sh

# The daemon in the foreground, on MODEL (a path or a `shammah models` name) or else the
# default choice (the largest model that fits in memory; the embedded one on a fresh machine).
# Honours SHAMMAH_HOME and SHAMMAH_HOST (and config.toml).
run: $(BUILD)/shammah
	$(BUILD)/shammah daemon $(if $(MODEL),-m $(MODEL))

# The embedded default model, trained from scratch with the project's own tokenizer learner
# and trainer on models/default/facts.txt (models/default/README.md: recipe, data, figures).
# About 45 minutes on 2 cores. Writes models/shammah-default.gguf; `make` then embeds it.
DM := $(BUILD)/default-model
DM_SHAPE := --arch llama --embd 256 --layers 4 --heads 4 --kv-heads 2 --ff 768 --ctx 2048 --tie
DM_TRAIN := --epochs 8 --batch-size 16 --max-seq-len 128 --lr 3e-3 --lr-min 2e-4 --warmup 100 \
            --weight-decay 0.1 --seed 42
default-model: $(BUILD)/shammah
	mkdir -p $(DM)
	sh models/default/make_data.sh $(DM)
	$(BUILD)/shammah model vocab --corpus $(DM)/corpus.txt --size 4096 --out $(DM)/vocab.gguf
	$(BUILD)/shammah model synth --type f32 --vocab copy:$(DM)/vocab.gguf $(DM_SHAPE) --out $(DM)/init.gguf
	$(BUILD)/shammah train --full --from-scratch --data $(DM)/train.jsonl -m $(DM)/init.gguf \
	    -o $(DM)/shammah-default.gguf $(DM_TRAIN) --f16 --name shammah-default
	sh models/default/eval.sh $(DM)/shammah-default.gguf $(DM)/heldout.tsv $(BUILD)/shammah > $(DM)/eval.txt
	tail -n 1 $(DM)/eval.txt
	cp $(DM)/shammah-default.gguf models/shammah-default.gguf
	@echo "models/shammah-default.gguf written; run make to embed it"
