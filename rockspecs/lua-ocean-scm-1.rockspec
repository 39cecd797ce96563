rockspec_format = "3.0"
package = "lua-ocean"
version = "scm-1"
source = {
  url = "git+https://github.com/lua-ocean/lua-ocean.git",
}
description = {
  summary = "Port Ocean integrations in Lua, on a C engine",
  detailed = [[
lua-ocean syncs third-party data into Port's software catalog: resync
functions (Lua coroutines) yield raw objects, jq mappings turn them into
entities, and a C engine upserts what changed and deletes what is gone,
with Ocean's safety rules. Runs standalone (`ocean sail`), as a library,
or inside OpenResty.
]],
  license = "Apache-2.0",
  homepage = "https://github.com/lua-ocean/lua-ocean",
}
dependencies = {
  "lua >= 5.1",
  "lyaml >= 6",
}
external_dependencies = {
  CURL = { library = "curl" },   -- no header: Debian keeps it in a multiarch folder the compiler searches
  JQ = { header = "jq.h", library = "jq" },
  MICROHTTPD = { header = "microhttpd.h", library = "microhttpd" },
  SQLITE = { header = "sqlite3.h", library = "sqlite3" },
}
build = {
  type = "builtin",
  modules = {
    ["ocean.core"] = {
      sources = {
        "src/jq/jqanalyze.c",
        "src/jq/jqform.c",
        "src/jq/jqlex.c",
        "src/jq/jqtok.c",
        "src/json/buf.c",
        "src/json/json.c",
        "src/json/json_num.c",
        "src/live/journal.c",
        "src/lua/lcore.c",
        "src/lua/ldiff.c",
        "src/lua/ljob.c",
        "src/lua/ljournal.c",
        "src/lua/ljson.c",
        "src/lua/lloop.c",
        "src/lua/lmapping.c",
        "src/lua/lport.c",
        "src/lua/lserver.c",
        "src/lua/lsync.c",
        "src/mapping/mapping.c",
        "src/mapping/mapping_parse.c",
        "src/mapping/mapping_prog.c",
        "src/mapping/mapping_run.c",
        "src/mapping/mapping_tree.c",
        "src/net/http_guard.c",
        "src/net/http_server.c",
        "src/net/loop.c",
        "src/net/transport.c",
        "src/port/port.c",
        "src/port/port_calls.c",
        "src/port/port_entities.c",
        "src/port/port_util.c",
        "src/sync/diff.c",
        "src/sync/sync.c",
        "src/sync/sync_end.c",
        "src/sync/sync_phase.c",
      },
      defines = { "_GNU_SOURCE" },
      incdirs = { "src", "$(CURL_INCDIR)", "$(JQ_INCDIR)", "$(MICROHTTPD_INCDIR)",
                  "$(SQLITE_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(JQ_LIBDIR)", "$(MICROHTTPD_LIBDIR)", "$(SQLITE_LIBDIR)" },
      libraries = { "jq", "curl", "microhttpd", "sqlite3", "m" },
    },
    ["ocean.cache"] = "lua/ocean/cache.lua",
    ["ocean.cli"] = "lua/ocean/cli.lua",
    ["ocean.config"] = "lua/ocean/config.lua",
    ["ocean.emulator.api"] = "lua/ocean/emulator/api.lua",
    ["ocean.emulator.cli"] = "lua/ocean/emulator/cli.lua",
    ["ocean.emulator.control"] = "lua/ocean/emulator/control.lua",
    ["ocean.emulator.entities"] = "lua/ocean/emulator/entities.lua",
    ["ocean.emulator.faults"] = "lua/ocean/emulator/faults.lua",
    ["ocean.emulator"] = "lua/ocean/emulator/init.lua",
    ["ocean.emulator.search"] = "lua/ocean/emulator/search.lua",
    ["ocean.emulator.store"] = "lua/ocean/emulator/store.lua",
    ["ocean.emulator.util"] = "lua/ocean/emulator/util.lua",
    ["ocean.engine"] = "lua/ocean/engine.lua",
    ["ocean.http"] = "lua/ocean/http.lua",
    ["ocean"] = "lua/ocean/init.lua",
    ["ocean.integration"] = "lua/ocean/integration.lua",
    ["ocean.journal"] = "lua/ocean/journal.lua",
    ["ocean.json"] = "lua/ocean/json.lua",
    ["ocean.listener"] = "lua/ocean/listener.lua",
    ["ocean.log"] = "lua/ocean/log.lua",
    ["ocean.mapping"] = "lua/ocean/mapping.lua",
    ["ocean.metrics"] = "lua/ocean/metrics.lua",
    ["ocean.openresty"] = "lua/ocean/openresty.lua",
    ["ocean.ops"] = "lua/ocean/ops.lua",
    ["ocean.port"] = "lua/ocean/port.lua",
    ["ocean.router"] = "lua/ocean/router.lua",
    ["ocean.runtime"] = "lua/ocean/runtime.lua",
    ["ocean.sail"] = "lua/ocean/sail.lua",
    ["ocean.scaffold"] = "lua/ocean/scaffold.lua",
    ["ocean.server"] = "lua/ocean/server.lua",
    ["ocean.sync"] = "lua/ocean/sync.lua",
    ["ocean.time"] = "lua/ocean/time.lua",
    ["ocean.yaml"] = "lua/ocean/yaml.lua",
  },
  install = {
    bin = { ocean = "bin/ocean" },
  },
}
