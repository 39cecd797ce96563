-- The installed `ocean` starts with no path set by hand (issue 13,
-- deliverable 6): after `make install PREFIX=P` and after
-- `luarocks make --tree T`, the command runs from a clean environment
-- (env -i: no LUA_PATH, LUA_CPATH, HOME or luarocks path), scaffolds an
-- integration and syncs it into the emulator.
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"
local core = require "ocean.core"

local q, sh = ehelp.shell_quote, ehelp.sh

-- Run `cmd` from / with nothing but PATH and `vars`: output, exit status.
local function clean(cmd, vars)
  local parts = { "cd / && env -i PATH=/usr/bin:/bin" }
  for k, v in pairs(vars or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  parts[#parts + 1] = cmd
  local out = sh(table.concat(parts, " ") .. " 2>&1; echo \"rc=$?\"")
  local text, rc = out:match("^(.-)rc=(%d+)\n$")
  return text, tonumber(rc)
end

-- `ocean new` then `ocean sail --once` with the installed command, then
-- the scaffold's own busted spec, which finds lua-ocean through it.
local function scaffold_and_sync(ocean, tmp)
  local emu = ehelp.start { quiet = true }
  local dir = tmp .. "/installed-check"
  local out, rc = clean(ocean .. " new " .. q(dir) .. " --yes --type installed-check")
  assert.are.equal(0, rc, out)
  out, rc = clean(ocean .. " sail " .. q(dir) .. " --once", { OCEAN__PORT__BASE_URL = emu.url,
    OCEAN__PORT__CLIENT_ID = emu.client_id, OCEAN__PORT__CLIENT_SECRET = emu.client_secret })
  assert.are.equal(0, rc, out)
  assert.are.equal(25, #emu.entities("installed-check-item"))
  emu.stop()
  out, rc = clean("sh -c " .. q("cd " .. q(dir) .. " && busted --lua=" .. sail.runtime() .. " spec"),
    { OCEAN_CMD = ocean, HOME = os.getenv("HOME") or "/tmp" })
  assert.are.equal(0, rc, out)
  assert.truthy(out:find("3 successes / 0 failures / 0 errors", 1, true), out)
end

local function version_line()
  local rt = sail.runtime() == "luajit" and "LuaJIT 2%.%d[^)]*" or "Lua 5%.4"
  return "^ocean " .. core.version:gsub("%.", "%%.") .. " %(" .. rt .. "%)\n$"
end

describe("the installed ocean command", function()
  local tmp
  before_each(function()
    tmp = ehelp.tmpdir()
    os.execute("chmod 755 " .. q(tmp))
  end)
  after_each(function() os.execute("rm -rf " .. q(tmp)) end)
  teardown(ehelp.stop_all)

  it("starts from a clean environment after make install PREFIX=...", function()
    local prefix = tmp .. "/prefix"
    local out = sh(("make -s -C %s install PREFIX=%s 2>&1; echo \"rc=$?\""):format(q(ehelp.root()), q(prefix)))
    assert.truthy(out:find("rc=0\n$"), out)
    -- the shebang's lua5.4, or the runtime the suite runs on
    local ocean = sail.runtime() == "luajit" and ("luajit " .. q(prefix .. "/bin/ocean"))
      or q(prefix .. "/bin/ocean")
    local text, rc = clean(ocean .. " version")
    assert.are.equal(0, rc, text)
    assert.matches(version_line(), text)
    -- through a symbolic link too
    os.execute(("ln -s %s %s"):format(q(prefix .. "/bin/ocean"), q(tmp .. "/ocean-link")))
    text, rc = clean(q(tmp .. "/ocean-link") .. " version --short")
    assert.are.same({ core.version .. "\n", 0 }, { text, rc })
    scaffold_and_sync(ocean, tmp)
  end)

  -- luarocks builds the C module (about 10 s): once, in the Lua 5.4
  -- variant against libjq 1.6 (luarocks here targets Lua 5.4 only).
  if (os.getenv("OCEAN_TEST_VARIANT") or sail.runtime()) == "lua5.4" then
    it("starts from a clean environment after luarocks make --tree T (deps-mode none, Debian's lua-yaml)", function()
      local src, tree = tmp .. "/src", tmp .. "/tree"
      local out = sh(("cd %s && mkdir -p %s && git ls-files -z --cached --others --exclude-standard"
        .. " | xargs -0 cp --parents -t %s 2>&1; echo \"rc=$?\""):format(q(ehelp.root()), q(src), q(src)))
      assert.truthy(out:find("rc=0\n$"), out)
      out = sh(("cd %s && luarocks --lua-version=5.4 --tree=%s make --deps-mode=none"
        .. " rockspecs/lua-ocean-scm-1.rockspec 2>&1;"
        .. " echo \"rc=$?\""):format(q(src), q(tree)))
      assert.truthy(out:find("rc=0\n$"), out)
      local text, rc = clean(q(tree .. "/bin/ocean") .. " version")
      assert.are.equal(0, rc, text)
      assert.matches(version_line(), text)
      text, rc = clean(q(tree .. "/bin/ocean") .. " port-emulator --help")
      assert.are.equal(0, rc, text)
      scaffold_and_sync(q(tree .. "/bin/ocean"), tmp)
    end)
  end
end)
