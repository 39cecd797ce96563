-- Ocean's CLI commands (issue 13, deliverable 3, the parts in cli.lua):
-- `ocean version` and `--help` on every command.
local core = require "ocean.core"
local sail = require "spec.helpers.sail"

describe("ocean version", function()
  it("prints the version and the runtime", function()
    local r = sail.run({ "version" })
    local rt = sail.runtime() == "luajit" and "LuaJIT 2%.%d[^)]*" or "Lua 5%.4"
    assert.are.equal(0, r.rc)
    assert.are.equal("", r.err)
    assert.matches("^ocean " .. core.version:gsub("%.", "%%.") .. " %(" .. rt .. "%)\n$", r.out)
  end)

  it("prints the version alone with --short", function()
    local r = sail.run({ "version", "--short" })
    assert.are.same({ 0, core.version .. "\n", "" }, { r.rc, r.out, r.err })
  end)

  it("refuses an unknown argument with exit status 2", function()
    local r = sail.run({ "version", "--long" })
    assert.are.equal(2, r.rc)
    assert.are.equal("ocean version: unknown argument --long\n", r.err:match("^[^\n]*\n"))
  end)
end)

describe("ocean <command> --help", function()
  local first_lines = {
    sail = "usage: ocean sail [PATH]",
    new = "usage: ocean new [PATH]",
    defaults = "usage: ocean defaults <dock|clean> [PATH]",
    version = "usage: ocean version [--short]",
    ["port-emulator"] = "usage: ocean port-emulator",
    ["port-app-config"] = "usage: ocean port-app-config schema [PATH]",
  }
  for cmd, first in pairs(first_lines) do
    it("describes " .. cmd .. " with --help, -h and `ocean help " .. cmd .. "` (exit 0)", function()
      local outs = {}
      for i, args in ipairs { { cmd, "--help" }, { cmd, "-h" }, { "help", cmd } } do
        local r = sail.run(args)
        assert.are.equal(0, r.rc, table.concat(args, " ") .. ": " .. r.err)
        assert.are.equal("", r.err)
        assert.are.equal(first, r.out:sub(1, #first))
        outs[i] = r.out
      end
      assert.are.equal(outs[1], outs[2])
      assert.are.equal(outs[1], outs[3])
    end)
  end

  it("lists every command in `ocean help`", function()
    local r = sail.run({ "help" })
    assert.are.equal(0, r.rc)
    for _, cmd in ipairs { "sail", "new", "defaults", "version", "port-emulator", "port-app-config", "help" } do
      assert.truthy(r.out:find("\n  " .. cmd .. " ", 1, true), cmd)
    end
  end)

  it("refuses help on an unknown command", function()
    local r = sail.run({ "help", "dock" })
    assert.are.equal(2, r.rc)
    assert.are.equal("ocean: unknown command 'dock'\n", r.err:match("^[^\n]*\n"))
  end)
end)
