-- ocean.cli: the `ocean` command line, Ocean's commands under Ocean's names.
--
--   ocean sail [PATH] ...        run an integration (ocean.sail)
--   ocean new [PATH] ...         scaffold an integration (ocean.scaffold)
--   ocean defaults dock|clean [PATH] ...  the blueprints and default mapping
--                                in Port (ocean.defaults)
--   ocean version [--short]      the version
--   ocean port-app-config schema [PATH]  the mapping's JSON Schema (ocean.selector)
--   ocean port-emulator ...      the bundled Port API emulator (ocean.emulator.cli)
--   ocean help [COMMAND]         usage; `ocean COMMAND --help` is the same
--
-- cli.main(argv) -> exit status (0 ok, 1 failure, 2 usage error). Each
-- command module has main(args) and answers --help itself.
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
  version [--short]    print the version
  port-app-config schema [PATH]
                       the JSON Schema of the integration's mapping
  port-emulator --listen HOST:PORT [--data FILE]
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
      io.stderr:write("ocean version: unknown argument ", a, "\n\n", VERSION_USAGE)
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
}

local function load_command(name)
  if name == "version" then return version end
  local modname = commands[name]
  if not modname then return nil end
  local ok, mod = pcall(require, modname)
  if not ok then return nil, tostring(mod) end
  return mod
end

-- Returns the process exit code.
function _M.main(argv)
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
  local mod, err = load_command(cmd)
  if not mod then
    if err then
      io.stderr:write("ocean: ", err, "\n")
      return 1
    end
    io.stderr:write("ocean: unknown command '", cmd, "'\n\n", USAGE)
    return 2
  end
  return mod.main(args)
end

return _M
