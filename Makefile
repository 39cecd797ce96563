# lua-ocean: the C engine (src/) built as the Lua module `ocean.core`, twice:
# once against Lua 5.4 and once against LuaJIT (OpenResty's luajit2).
# Flags come from pkg-config; libjq 1.6 has no .pc file (-ljq). libcrypto
# (OpenSSL) gives ocean.hmac and ocean.secure_compare (src/lua/lcrypto.c).
# The module never links liblua: the interpreter (lua5.4, luajit, nginx)
# exports the Lua API itself.

PREFIX   ?= /usr/local
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN      = -std=c99 -Wall -Wextra -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wwrite-strings -Wundef
DEFS      = -D_GNU_SOURCE
DEPS_CFLAGS := $(shell pkg-config --cflags libcurl libmicrohttpd sqlite3 oniguruma libcrypto)
DEPS_LIBS   := $(shell pkg-config --libs libcurl libmicrohttpd sqlite3 oniguruma libcrypto) -ljq -lm -lpthread
LUA54_CFLAGS := $(shell pkg-config --cflags lua5.4)
LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit)

# src/ has one folder per subsystem (docs/architecture.md): the engine's
# layers, then the binding. Includes name the layer ("json/json.h"), from
# -Isrc; scripts/check-includes keeps them to the layering.
LAYERS   = json jq mapping net port sync live
CORE_SRC = $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.c))
BIND_SRC = $(wildcard src/lua/*.c)
HEADERS  = $(foreach l,$(LAYERS) lua,$(wildcard src/$(l)/*.h))

LUA_FILES = $(shell find lua -name '*.lua' | sort)

.PHONY: setup demo all jq17 clean test test-jq16 test-jq17 test-lua54 test-luajit bench bench-cjson \
        bench-journal bench-live install uninstall \
        valgrind asan gc-stress lint check-rockspec fuzz

all: build/lua5.4/ocean/core.so build/luajit/ocean/core.so

# The same module against libjq 1.7.1, built from Debian 13's source into
# build/jq-1.7.1 (scripts/build-jq17); found at run time through an rpath.
JQ17_PREFIX := $(CURDIR)/build/jq-1.7.1
JQ17_FLAGS   = -isystem $(JQ17_PREFIX)/include
JQ17_LIBS    = $(shell pkg-config --libs libcurl libmicrohttpd sqlite3 oniguruma libcrypto) \
               -L$(JQ17_PREFIX)/lib -Wl,-rpath,$(JQ17_PREFIX)/lib -ljq -lm -lpthread

jq17: build/jq17/lua5.4/ocean/core.so build/jq17/luajit/ocean/core.so

$(JQ17_PREFIX)/lib/libjq.so: scripts/build-jq17
	@scripts/build-jq17

build/jq17/lua5.4/ocean/core.so: $(CORE_SRC) $(BIND_SRC) $(HEADERS) Makefile $(JQ17_PREFIX)/lib/libjq.so
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -shared -Isrc $(JQ17_FLAGS) $(LUA54_CFLAGS) \
	  $(DEPS_CFLAGS) $(CORE_SRC) $(BIND_SRC) -o $@ $(JQ17_LIBS)

build/jq17/luajit/ocean/core.so: $(CORE_SRC) $(BIND_SRC) $(HEADERS) Makefile $(JQ17_PREFIX)/lib/libjq.so
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -shared -Isrc $(JQ17_FLAGS) $(LUAJIT_CFLAGS) \
	  $(DEPS_CFLAGS) $(CORE_SRC) $(BIND_SRC) -o $@ $(JQ17_LIBS)

build/lua5.4/ocean/core.so: $(CORE_SRC) $(BIND_SRC) $(HEADERS) Makefile
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -shared -Isrc $(LUA54_CFLAGS) \
	  $(DEPS_CFLAGS) $(CORE_SRC) $(BIND_SRC) -o $@ $(DEPS_LIBS)

build/luajit/ocean/core.so: $(CORE_SRC) $(BIND_SRC) $(HEADERS) Makefile
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -shared -Isrc $(LUAJIT_CFLAGS) \
	  $(DEPS_CFLAGS) $(CORE_SRC) $(BIND_SRC) -o $@ $(DEPS_LIBS)

# The whole busted suite under Lua 5.4 and LuaJIT, each against libjq 1.6
# (Debian 12's) and libjq 1.7.1; the last line is "N passed, N failed"
# over the four runs.
test: all jq17
	@scripts/run-tests

test-jq16: all
	@scripts/run-tests lua5.4 luajit

test-jq17: jq17
	@scripts/run-tests lua5.4-jq17 luajit-jq17

test-lua54: all
	@scripts/run-tests lua5.4

test-luajit: all
	@scripts/run-tests luajit

bench: all
	@scripts/run-bench

# Random jq-like expressions over random JSON through the mapping engine,
# four variants, FUZZ_SECONDS (600) in all; a crash or a hang is a finding
# (record: bench/results/fuzz.md). Not part of `make test`.
fuzz: all jq17
	@OCEAN_ROOT=$(CURDIR) lua5.4 fuzz/run.lua

# cJSON (Debian's libcjson-dev) against the engine's scanner on every path
# that reads JSON (bench/cjson.lua); results in bench/results/cjson.txt.
bench-cjson: all build/bench/lua5.4/cjson_bench.so build/bench/luajit/cjson_bench.so
	@scripts/run-bench cjson

build/bench/lua5.4/cjson_bench.so: bench/cjson_module.c $(CORE_SRC) $(BIND_SRC) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -shared -Isrc $(LUA54_CFLAGS) $(DEPS_CFLAGS) \
	  bench/cjson_module.c $(CORE_SRC) $(BIND_SRC) -o $@ $(DEPS_LIBS) -lcjson

build/bench/luajit/cjson_bench.so: bench/cjson_module.c $(CORE_SRC) $(BIND_SRC) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -shared -Isrc $(LUAJIT_CFLAGS) $(DEPS_CFLAGS) \
	  bench/cjson_module.c $(CORE_SRC) $(BIND_SRC) -o $@ $(DEPS_LIBS) -lcjson

# The live-event journal's append latency on this machine's disk
# (bench/journal.c), BENCH_REPEAT runs (default 3: a shared disk's
# latency drifts); results in bench/results/journal.txt.
build/bench-journal: bench/journal.c src/live/journal.c src/live/journal.h Makefile
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -Isrc bench/journal.c src/live/journal.c -o $@ \
	  $(shell pkg-config --cflags --libs sqlite3)

bench-journal: build/bench-journal
	@mkdir -p bench/results
	@{ echo "# lua-ocean journal benchmark, $$(date -u +%Y-%m-%dT%H:%MZ)"; \
	   for i in $$(seq $${BENCH_REPEAT:-3}); do \
	     echo; echo "# run $$i: $$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $$(nproc) CPUs," \
	        "load $$(cut -d' ' -f1-3 /proc/loadavg); $$(df -T $${BENCH_DIR:-/tmp} | awk 'NR==2 {print $$2}') at $${BENCH_DIR:-/tmp}"; \
	     build/bench-journal $${BENCH_COUNT:-2000} $${BENCH_BODY:-1024} $${BENCH_DIR:-/tmp}; \
	   done; } | tee bench/results/journal.txt

# Live events end to end (bench/live.lua): N = 1 000 webhooks at once to
# `ocean sail` (Lua 5.4, LuaJIT) and nginx, against the emulator with and
# without a 500 ms delay on bulk upserts, and a SIGKILL mid-burst; results
# in bench/results/live.txt. BENCH_N, BENCH_ONLY, BENCH_DELAYS: see the file.
bench-live: all
	@mkdir -p bench/results
	@OCEAN_ROOT=$(CURDIR) LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
	  LUA_CPATH="$(CURDIR)/build/lua5.4/?.so;;" lua5.4 bench/live.lua

# valgrind over the suite in both runtimes (slow; not part of `make test`).
valgrind: all
	@VALGRIND=1 scripts/run-tests

# AddressSanitizer + UBSan: the module built instrumented into build/asan
# and the core and mapping specs run under both runtimes with libasan
# preloaded (the interpreters are not instrumented). Leaks are reported
# (libjq's own in jv_parse are suppressed: scripts/lsan.supp).
ASAN_CFLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined
ASAN_SPECS ?= spec/01-core spec/02-mapping

build/asan/lua5.4/ocean/core.so: $(CORE_SRC) $(BIND_SRC) $(HEADERS) Makefile
	@mkdir -p $(@D)
	$(CC) $(ASAN_CFLAGS) $(WARN) $(DEFS) -fPIC -shared -Isrc $(LUA54_CFLAGS) \
	  $(DEPS_CFLAGS) $(CORE_SRC) $(BIND_SRC) -o $@ $(DEPS_LIBS)

build/asan/luajit/ocean/core.so: $(CORE_SRC) $(BIND_SRC) $(HEADERS) Makefile
	@mkdir -p $(@D)
	$(CC) $(ASAN_CFLAGS) $(WARN) $(DEFS) -fPIC -shared -Isrc $(LUAJIT_CFLAGS) \
	  $(DEPS_CFLAGS) $(CORE_SRC) $(BIND_SRC) -o $@ $(DEPS_LIBS)

build/asan/keep.so: scripts/asan-keep.c
	@mkdir -p $(@D)
	$(CC) -O2 $(WARN) -fPIC -shared $< -o $@

asan: build/asan/lua5.4/ocean/core.so build/asan/luajit/ocean/core.so build/asan/keep.so
	@ASAN=1 SPEC="$(ASAN_SPECS)" scripts/run-tests lua5.4-asan luajit-asan

# The core specs with the garbage collector running all the time (Lua
# 5.4: generational, minor collections at 1 % growth; LuaJIT: pause 0, a
# new cycle as soon as one ends), as luv's CI does: a binding that holds a
# value it does not anchor fails here.
GC_STRESS_SPECS ?= spec/01-core spec/02-mapping spec/03-port

gc-stress: all
	@GC_STRESS=1 SPEC="$(GC_STRESS_SPECS)" scripts/run-tests lua5.4 luajit

install: all
	install -d $(DESTDIR)$(PREFIX)/lib/lua/5.4/ocean \
	           $(DESTDIR)$(PREFIX)/lib/lua/5.1/ocean $(DESTDIR)$(PREFIX)/bin
	install -m 0644 build/lua5.4/ocean/core.so $(DESTDIR)$(PREFIX)/lib/lua/5.4/ocean/core.so
	install -m 0644 build/luajit/ocean/core.so $(DESTDIR)$(PREFIX)/lib/lua/5.1/ocean/core.so
	for f in $(LUA_FILES); do \
	  rel=$${f#lua/}; \
	  install -D -m 0644 $$f $(DESTDIR)$(PREFIX)/share/lua/5.4/$$rel; \
	  install -D -m 0644 $$f $(DESTDIR)$(PREFIX)/share/lua/5.1/$$rel; \
	done
	install -m 0755 bin/ocean $(DESTDIR)$(PREFIX)/bin/ocean

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/lib/lua/5.4/ocean $(DESTDIR)$(PREFIX)/lib/lua/5.1/ocean \
	       $(DESTDIR)$(PREFIX)/share/lua/5.4/ocean $(DESTDIR)$(PREFIX)/share/lua/5.1/ocean \
	       $(DESTDIR)$(PREFIX)/share/lua/5.4/ocean.lua $(DESTDIR)$(PREFIX)/bin/ocean

lint:
	luacheck --no-color lua spec bin/ocean examples fuzz
	@scripts/check-includes

# The rockspec lists every C source and Lua module of the tree (and
# nothing else), and luarocks accepts it.
check-rockspec:
	@scripts/check-rockspec
	@luarocks lint rockspecs/lua-ocean-scm-1.rockspec

clean:
	rm -rf build *.o *.so

# Install what's missing (Debian 12) and build: `make setup demo`,
# `make setup test`.
setup:
	@scripts/setup

# The main job: the example integration synced into the bundled emulator.
demo: all
	@scripts/demo
