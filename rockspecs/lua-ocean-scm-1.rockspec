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
  CURL = { header = "curl/curl.h", library = "curl" },
  JQ = { header = "jq.h", library = "jq" },
  ONIG = { header = "oniguruma.h", library = "onig" },
  MICROHTTPD = { header = "microhttpd.h", library = "microhttpd" },
}
build = {
  type = "builtin",
  modules = {
    ["ocean.core"] = {
      sources = {
        "src/buf.c",
        "src/diff.c",
        "src/http_server.c",
        "src/jqanalyze.c",
        "src/jqbudget.c",
        "src/jqform.c",
        "src/jqlex.c",
        "src/jqlib.c",
        "src/jqprelude.c",
        "src/jqregex.c",
        "src/jqtok.c",
        "src/json.c",
        "src/loop.c",
        "src/lua/lcore.c",
        "src/lua/ljson.c",
        "src/lua/lloop.c",
        "src/lua/lmapping.c",
        "src/lua/lport.c",
        "src/lua/lserver.c",
        "src/lua/lsync.c",
        "src/mapping.c",
        "src/mapping_parse.c",
        "src/mapping_prog.c",
        "src/mapping_run.c",
        "src/mapping_tree.c",
        "src/port.c",
        "src/port_calls.c",
        "src/port_entities.c",
        "src/port_util.c",
        "src/sync.c",
        "src/sync_end.c",
        "src/transport.c",
      },
      defines = { "_GNU_SOURCE" },
      incdirs = { "src", "$(CURL_INCDIR)", "$(JQ_INCDIR)", "$(MICROHTTPD_INCDIR)", "$(ONIG_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(JQ_LIBDIR)", "$(MICROHTTPD_LIBDIR)", "$(ONIG_LIBDIR)" },
      libraries = { "jq", "onig", "curl", "microhttpd", "m", "pthread" },
    },
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
    ["ocean.json"] = "lua/ocean/json.lua",
    ["ocean.log"] = "lua/ocean/log.lua",
    ["ocean.mapping"] = "lua/ocean/mapping.lua",
    ["ocean.openresty"] = "lua/ocean/openresty.lua",
    ["ocean.ops"] = "lua/ocean/ops.lua",
    ["ocean.port"] = "lua/ocean/port.lua",
    ["ocean.router"] = "lua/ocean/router.lua",
    ["ocean.runtime"] = "lua/ocean/runtime.lua",
    ["ocean.sail"] = "lua/ocean/sail.lua",
    ["ocean.server"] = "lua/ocean/server.lua",
    ["ocean.sync"] = "lua/ocean/sync.lua",
    ["ocean.yaml"] = "lua/ocean/yaml.lua",
  },
  install = {
    bin = { ocean = "bin/ocean" },
  },
}
