-- A signal stops `ocean sail` wherever it waits: Port unreachable and
-- retried at start, a login or a bootstrap call Port holds, an on_start
-- hook waiting on a third party, a resync function waiting on one. Each
-- ends within a couple of seconds of SIGTERM with a line that says where
-- it stopped and a true exit status (--once: 1, no resync ran; a listener:
-- 0, stopped as asked), and no retry is logged after the signal.
local core = require "ocean.core"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local ITEMS = ehelp.root() .. "/spec/fixtures/items"
-- generous for a loaded 2-core machine; before the fix these took 60 s+
local PROMPT_MS = 5000

local function base_env(url)
  return {
    OCEAN__PORT__BASE_URL = url,
    OCEAN__PORT__CLIENT_ID = ehelp.CLIENT_ID,
    OCEAN__PORT__CLIENT_SECRET = ehelp.CLIENT_SECRET,
    OCEAN__INTEGRATION__IDENTIFIER = "spec-stop",
    OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = "/nonexistent/items.json",
  }
end

-- Start, wait until `ready(err_text)` is true, SIGTERM; returns rc, out,
-- err and the ms from the signal to the exit.
local started_at
local function after_ms(ms) return core.monotonic_ms() - started_at >= ms end

local function term_when(args, env, ready)
  started_at = core.monotonic_ms()
  local p = sail.start(args, env)
  sail.eventually(function()
    local _, err = p:output()
    if p:status() then error("ocean sail exited before the signal:\n" .. err) end
    return ready(err)
  end, 30, "the process to reach the wait")
  local t0 = core.monotonic_ms()
  p:signal("TERM")
  local rc = p:wait(30)
  local ms = core.monotonic_ms() - t0
  local _, out, err = nil, p:output()
  p:stop()
  return rc, out, err, ms
end

local function after_signal(err)
  return err:match("SIGTERM received: stopping.*$") or ""
end

describe("ocean sail stops on SIGTERM", function()
  teardown(function()
    sail.stop_all()
    ehelp.stop_all()
  end)

  for _, case in ipairs {
    { "--once", { "--once" }, 1 },
    { "a listener (WEBHOOKS_ONLY)", { "--port", tostring(sail.free_port()), "--host", "127.0.0.1" }, 0 },
  } do
    it("while Port is unreachable and its login retried: " .. case[1], function()
      local env = base_env("http://127.0.0.1:1")
      env.OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY"
      local args = { "sail", ITEMS }
      for _, a in ipairs(case[2]) do args[#args + 1] = a end
      local rc, _, err, ms = term_when(args, env, function(e)
        return select(2, e:gsub("retrying Port POST /v1/auth/access_token", "")) >= 3
      end)
      assert.are.equal(case[3], rc)
      assert.is_true(ms < PROMPT_MS, ("exited %.0f ms after SIGTERM"):format(ms))
      local tail = after_signal(err)
      assert.matches("stopped during start%-up %(bootstrap%): no resync ran", tail)
      assert.is_nil(tail:find("retrying", 1, true), "a retry after the signal:\n" .. tail)
    end)
  end

  -- Port answers, late: the login, then the integration's own record.
  for _, held in ipairs { "^/v1/auth/access_token$", "^/v1/integration" } do
    it("while Port holds " .. held, function()
      local emu = ehelp.start { quiet = true }
      emu.faults { { path = held, delay_ms = 120000 } }
      local rc, out, err, ms = term_when({ "sail", ITEMS, "--once" }, base_env(emu.url),
        function() return after_ms(1500) end)
      assert.are.equal(1, rc)
      assert.is_true(ms < PROMPT_MS, ("exited %.0f ms after SIGTERM"):format(ms))
      assert.matches("stopped during start%-up %(bootstrap%): no resync ran", err)
      assert.are.equal("", out)
      assert.are.same({}, emu.entities())
      emu.stop()
    end)
  end

  it("while an on_start hook and a resync function wait on a third party", function()
    local emu = ehelp.start { quiet = true }
    local dir = ehelp.tmpdir()
    os.execute(("cp -r %s/. %s"):format(ehelp.shell_quote(ITEMS), ehelp.shell_quote(dir)))
    ehelp.write_file(dir .. "/items.json", "[]")
    ehelp.write_file(dir .. "/main.lua", assert(ehelp.read_file(ITEMS .. "/main.lua")) .. [[

local function slow()
  return ocean.http.get(ocean.integration_config.slow_url)
end
ocean.on_start(function()
  if ocean.integration_config.slow_start then
    local r, err = slow()
    ocean.log.info("on_start hook: %s", r and "answered" or err)
  end
end)
ocean.on_resync("item", function()
  local r, err = slow()
  if not r then return nil, err end
  return {}
end)
]])
    emu.faults { { path = "^/v1/slow", delay_ms = 120000 } }
    local env = base_env(emu.url)
    env.OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json"
    env.OCEAN__INTEGRATION__CONFIG__SLOW_URL = emu.url .. "/v1/slow"
    env.OCEAN__INTEGRATION__CONFIG__SLOW_START = "true"
    local rc, out, err, ms = term_when({ "sail", dir, "--once" }, env, function(e)
      return e:find("creating it", 1, true) ~= nil and after_ms(1000)
    end)
    assert.are.equal(1, rc)
    assert.is_true(ms < PROMPT_MS, ("exited %.0f ms after SIGTERM"):format(ms))
    assert.matches("on_start hook: GET [^\n]*/v1/slow stopped: the integration is stopping", err)
    assert.matches("stopped during start%-up %(on_start hooks%): no resync ran", err)
    assert.are.equal("", out)

    -- the same wait inside a resync: the resync is aborted, nothing deleted
    emu.seed { { blueprint = "specItem", identifier = "keep", title = "Keep" } }
    env.OCEAN__INTEGRATION__CONFIG__SLOW_START = nil
    rc, out, err, ms = term_when({ "sail", dir, "--once" }, env, function(e)
      return e:find("started (resource 1 of", 1, true) ~= nil and after_ms(1000)
    end)
    assert.are.equal(1, rc)
    assert.is_true(ms < PROMPT_MS, ("exited %.0f ms after SIGTERM"):format(ms))
    assert.matches("resync aborted", out)
    assert.matches("SIGTERM received: stopping %(aborting the running resync%)", err)
    assert.is_nil(after_signal(err):find("retrying", 1, true))
    assert.are.equal(1, #emu.entities("specItem"))
    emu.stop()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  -- A resync function that works long and gives the others a turn with
  -- ocean.sleep(0) between pieces of work (no Port or third-party wait):
  -- the signal was read only once the whole generator had run (its
  -- sleeps never reached a loop wait), and its pages were then sent.
  for _, case in ipairs {
    { "--once", { "--once" }, 1 },
    { "a listener (POLLING)", { "--port", tostring(sail.free_port()), "--host", "127.0.0.1" }, 0 },
  } do
    it("while a resync function works and sleeps 0 between pieces: " .. case[1], function()
      local emu = ehelp.start { quiet = true }
      local dir = ehelp.tmpdir()
      os.execute(("cp -r %s/. %s"):format(ehelp.shell_quote(ITEMS), ehelp.shell_quote(dir)))
      ehelp.write_file(dir .. "/items.json", "[]")
      ehelp.write_file(dir .. "/main.lua", assert(ehelp.read_file(ITEMS .. "/main.lua")) .. [[

ocean.on_resync("item", function()
  for page = 1, 60 do                       -- a minute of work, 1 s a page
    for _ = 1, 200 do
      local t = os.clock() + 0.005
      while os.clock() < t do end
      ocean.sleep(0)
    end
    ocean.log.info("page %d worked", page)
    coroutine.yield({ { id = "w" .. page, name = "Worked", size = page } })
  end
end)
]])
      emu.seed { { blueprint = "specItem", identifier = "keep", title = "Keep" } }
      local env = base_env(emu.url)
      env.OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json"
      env.OCEAN__EVENT_LISTENER__TYPE = "POLLING"
      local args = { "sail", dir }
      for _, a in ipairs(case[2]) do args[#args + 1] = a end
      local rc, _, err, ms = term_when(args, env, function(e)
        return e:find("page 1 worked", 1, true) ~= nil
      end)
      assert.are.equal(case[3], rc, err)
      assert.is_true(ms < PROMPT_MS, ("exited %.0f ms after SIGTERM"):format(ms))
      assert.matches("SIGTERM received: stopping %(aborting the running resync%)", err)
      assert.matches("resync [%x%-]+ aborted: nothing was deleted", err)
      assert.is_nil(after_signal(err):find("page %d+ worked"), after_signal(err))
      local ids = {}
      for _, e in ipairs(emu.entities("specItem")) do ids[e.identifier] = true end
      assert.is_true(ids.keep)
      emu.stop()
      os.execute("rm -rf " .. ehelp.shell_quote(dir))
    end)
  end
end)
