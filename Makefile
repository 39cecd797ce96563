# lua-ocean: the C engine (src/) built as the Lua module `ocean.core`, twice:
# once against Lua 5.4 and once against LuaJIT (OpenResty's luajit2).
# Flags come from pkg-config; libjq 1.6 has no .pc file (-ljq).
# The module never links liblua: the interpreter (lua5.4, luajit, nginx)
# exports the Lua API itself.

PREFIX   ?= /usr/local
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN      = -std=c99 -Wall -Wextra -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wwrite-strings -Wundef
DEFS      = -D_GNU_SOURCE
DEPS_CFLAGS := $(shell pkg-config --cflags libcurl libmicrohttpd)
DEPS_LIBS   := $(shell pkg-config --libs libcurl libmicrohttpd) -ljq -lm
LUA54_CFLAGS := $(shell pkg-config --cflags lua5.4)
LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit)

CORE_SRC = $(wildcard src/*.c)
BIND_SRC = $(wildcard src/lua/*.c)
HEADERS  = $(wildcard src/*.h src/lua/*.h)

LUA_FILES = $(shell find lua -name '*.lua' | sort)

.PHONY: setup demo all clean test test-lua54 test-luajit bench install uninstall \
        valgrind asan lint check-rockspec

all: build/lua5.4/ocean/core.so build/luajit/ocean/core.so

build/lua5.4/ocean/core.so: $(CORE_SRC) $(BIND_SRC) $(HEADERS) Makefile
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -shared -Isrc $(LUA54_CFLAGS) \
	  $(DEPS_CFLAGS) $(CORE_SRC) $(BIND_SRC) -o $@ $(DEPS_LIBS)

build/luajit/ocean/core.so: $(CORE_SRC) $(BIND_SRC) $(HEADERS) Makefile
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) $(DEFS) -fPIC -shared -Isrc $(LUAJIT_CFLAGS) \
	  $(DEPS_CFLAGS) $(CORE_SRC) $(BIND_SRC) -o $@ $(DEPS_LIBS)

# The whole busted suite under Lua 5.4 and under LuaJIT; the last line is
# "N passed, N failed" over both runs.
test: all
	@scripts/run-tests

test-lua54: all
	@scripts/run-tests lua5.4

test-luajit: all
	@scripts/run-tests luajit

bench: all
	@scripts/run-bench

# valgrind over the suite in both runtimes (slow; not part of `make test`).
valgrind: all
	@VALGRIND=1 scripts/run-tests

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
	luacheck --no-color lua spec bin/ocean examples

clean:
	rm -rf build *.o *.so

# Install what's missing (Debian 12) and build: `make setup demo`,
# `make setup test`.
setup:
	@scripts/setup

# The main job: the example integration synced into the bundled emulator.
demo: all
	@scripts/demo
