-- ocean.cli: the `ocean` command line, Ocean's commands under Ocean's names.
--
--   ocean sail [PATH] ...        run an integration (ocean.sail)
--   ocean new [PATH] ...         scaffold an integration (ocean.scaffold)
--   ocean defaults dock|clean [PATH] ...  the blueprints and default mapping
--                                in Port (ocean.defaults)
--   ocean journal [PATH] ...     the live-event journals: list, requeue and
--                                drop dead letters (ocean.journal_cli)
--   ocean version [--short]      the version
--   ocean port-app-config schema [PATH]  the mapping's JSON Schema (ocean.selector)
--   ocean port-emulator ...      the bundled Port API emulator (ocean.emulator.cli)
--   ocean path [--runtime RT] [--lua-path|--lua-cpath]  where lua-ocean's
--                                modules are, as LUA_PATH/LUA_CPATH
--   ocean help [COMMAND]         usage; `ocean COMMAND --help` is the same
--
-- cli.main(argv [, where]) -> exit status (0 ok, 1 failure, 2 usage
-- error). where: what bin/ocean found ({layout = "checkout", lua=, build=}
-- or {layout = "prefix", prefix=}; nil: the interpreter's own paths).
-- Each command module has main(args) and answers --help itself.
local core = require "ocean.core"

local _M = {}

local USAGE = [[
usage: ocean <command> [options]

commands:
  sail [PATH] [-O|--once] [-p|--port N] [-l|--log-level LEVEL]
       [-i|--initialize-port-resources BOOL] [--host ADDR] [--plan]
                       run the integration in PATH (default .)
  new [PATH] [--name NAME] [--type TYPE] [--kind KIND] [--yes] ...
                       scaffold a new integration in PATH
  defaults dock [PATH] [--update-mapping]
                       create the blueprints and the default mapping in Port
                       (--update-mapping: push the local mapping)
  defaults clean [PATH] [--force] [--dry-run] [--destroy]
                       delete those blueprints and their entities
  journal [PATH] [--list | --requeue ID... | --requeue-all | --drop ID...]
                       the live-event journals: pending events, dead
                       letters; requeue or drop dead letters
  version [--short]    print the version
  path [--runtime lua5.4|luajit] [--lua-path|--lua-cpath]
                       where lua-ocean's modules are (LUA_PATH, LUA_CPATH)
  port-app-config schema [PATH]
                       the JSON Schema of the integration's mapping
  port-emulator [--listen HOST:PORT] [--data FILE]
                       run the bundled Port API emulator
  help [COMMAND]       this text, or a command's

`ocean <command> --help` describes a command's options.
]]

local VERSION_USAGE = [[
usage: ocean version [--short]

Print lua-ocean's version and the Lua runtime running it
("ocean 0.1.0 (Lua 5.4)"); --short prints the version alone.
]]

local function runtime_name()
  local jit = rawget(_G, "jit")
  if jit and jit.version then return jit.version end
  return _VERSION
end

-- `ocean version [--short]`
local version = {}
function version.main(args)
  local short = false
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then
      io.stdout:write(VERSION_USAGE)
      return 0
    elseif a == "--short" or a == "-s" then
      short = true
    else
      io.stderr:write("ocean version: unknown argument ", a, "\nsee ocean version --help\n")
      return 2
    end
  end
  if short then
    io.stdout:write(core.version, "\n")
  else
    io.stdout:write("ocean ", core.version, " (", runtime_name(), ")\n")
  end
  return 0
end

local commands = {
  ["port-emulator"] = "ocean.emulator.cli",
  ["sail"] = "ocean.sail",
  ["new"] = "ocean.scaffold",
  ["defaults"] = "ocean.defaults",
  ["port-app-config"] = "ocean.selector",
  ["journal"] = "ocean.journal_cli",
}

local PATH_USAGE = [[
usage: ocean path [--runtime lua5.4|luajit] [--lua-path|--lua-cpath]

Print where this ocean command finds lua-ocean's Lua modules and its C
module (a checkout's lua/ and build/RT, make install's or a luarocks
tree's share/lua/V and lib/lua/V), as luarocks path does:
  export LUA_PATH='...;;'
  export LUA_CPATH='...;;'
so that another Lua program (a busted spec, a script) can require
"ocean" and "ocean.json" with nothing set by hand:
  eval "$(ocean path)"
--runtime: for that runtime (default: the one running ocean; LuaJIT
reads Lua 5.1's folders). --lua-path / --lua-cpath: only that value,
without the trailing ;; (empty when the interpreter's own paths hold them).
]]

-- An absolute form of a path bin/ocean found from its own (maybe
-- relative) name.
local function absolute(p)
  if p:sub(1, 1) == "/" then return p end
  local h = io.popen("pwd")
  local cwd = h and h:read("*l")
  if h then h:close() end
  return (cwd or ".") .. "/" .. p:gsub("^%./", "")
end

-- `ocean path`: the templates for runtime `rt`, or nil, err.
local function templates(where, rt)
  if not where then return "", "" end
  where = { layout = where.layout, lua = where.lua and absolute(where.lua),
            build = where.build and absolute(where.build),
            prefix = where.prefix and absolute(where.prefix) }
  if where.layout == "checkout" then
    local c = where.build .. "/" .. rt
    local f = io.open(c .. "/ocean/core.so", "rb")
    if not f then return nil, "lua-ocean is not built for " .. rt .. " in " .. where.build
      .. " (make " .. (rt == "luajit" and "luajit" or "lua54") .. ")" end
    f:close()
    return where.lua .. "/?.lua;" .. where.lua .. "/?/init.lua", c .. "/?.so"
  end
  local v = rt == "luajit" and "5.1" or "5.4"
  local share, lib = where.prefix .. "/share/lua/" .. v, where.prefix .. "/lib/lua/" .. v
  local f = io.open(share .. "/ocean/cli.lua", "rb")
  if not f then return nil, "lua-ocean is not installed for " .. rt .. " in " .. where.prefix end
  f:close()
  return share .. "/?.lua;" .. share .. "/?/init.lua", lib .. "/?.so"
end

local function path_main(args, where)
  local rt, only = rawget(_G, "jit") and "luajit" or "lua5.4", nil
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--help" or a == "-h" then
      io.stdout:write(PATH_USAGE)
      return 0
    elseif a == "--runtime" and (args[i + 1] == "lua5.4" or args[i + 1] == "luajit") then
      rt, i = args[i + 1], i + 1
    elseif a == "--lua-path" or a == "--lua-cpath" then
      only = a
    else
      io.stderr:write("ocean path: ", a == "--runtime" and "--runtime takes lua5.4 or luajit"
        or "unknown argument " .. a, "\nsee ocean path --help\n")
      return 2
    end
    i = i + 1
  end
  local lpath, cpath = templates(where, rt)
  if not lpath then
    io.stderr:write("ocean path: ", cpath, "\n")
    return 1
  end
  if only == "--lua-path" then io.stdout:write(lpath, "\n")
  elseif only == "--lua-cpath" then io.stdout:write(cpath, "\n")
  else
    local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
    io.stdout:write("export LUA_PATH=", q(lpath .. ";;"), "\n",
                    "export LUA_CPATH=", q(cpath .. ";;"), "\n")
  end
  return 0
end

local function load_command(name, where)
  if name == "version" then return version end
  if name == "path" then return { main = function(args) return path_main(args, where) end } end
  local modname = commands[name]
  if not modname then return nil end
  local ok, mod = pcall(require, modname)
  if not ok then return nil, tostring(mod) end
  return mod
end

-- Returns the process exit code.
function _M.main(argv, where)
  local args = {}
  for i = 1, #argv do args[i] = argv[i] end
  local cmd = table.remove(args, 1)
  if cmd == nil or cmd == "--help" or cmd == "-h" then
    io.stdout:write(USAGE)
    return cmd and 0 or 2
  end
  if cmd == "--version" then            -- kept: the short form scripts use
    io.stdout:write("ocean ", core.version, "\n")
    return 0
  end
  if cmd == "help" then
    if #args == 0 then
      io.stdout:write(USAGE)
      return 0
    end
    cmd, args = args[1], { "--help" }
  end
  local mod, err = load_command(cmd, where)
  if not mod then
    if err then
      io.stderr:write("ocean: ", err, "\n")
      return 1
    end
    io.stderr:write("ocean: unknown command '", cmd, "'\nsee ocean help\n")
    return 2
  end
  return mod.main(args)
end

return _M
