-- ocean.cli: the `ocean` command line (sail, port-emulator, --version).
local _M = {}

local core = require "ocean.core"

local USAGE = [[
usage: ocean <command> [options]

commands:
  sail [PATH] [--once] [--plan] [--port N] [--host ADDR] [--log-level LEVEL]
                       run the integration in PATH (default .)
  port-emulator --listen HOST:PORT [--data FILE]
                       run the bundled Port API emulator
  --version            print the version
  --help               this text

`ocean <command> --help` describes a command's options.
]]

local commands = {
  ["port-emulator"] = "ocean.emulator.cli",
  ["sail"] = "ocean.sail",
}

-- Returns the process exit code.
function _M.main(argv)
  local args = {}
  for i = 1, #argv do args[i] = argv[i] end
  local cmd = table.remove(args, 1)
  if cmd == nil or cmd == "--help" or cmd == "-h" or cmd == "help" then
    io.stdout:write(USAGE)
    return cmd and 0 or 2
  end
  if cmd == "--version" or cmd == "version" then
    io.stdout:write("ocean ", core.version, "\n")
    return 0
  end
  local modname = commands[cmd]
  if not modname then
    io.stderr:write("ocean: unknown command '", cmd, "'\n\n", USAGE)
    return 2
  end
  local ok, mod = pcall(require, modname)
  if not ok then
    io.stderr:write("ocean: ", tostring(mod), "\n")
    return 1
  end
  return mod.main(args)
end

return _M
