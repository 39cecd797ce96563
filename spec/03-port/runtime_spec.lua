-- ocean.runtime: how Lua waits for the loop, standalone and in nginx
-- (the nginx side with a stand-in `ngx` table).
local core = require "ocean.core"
local runtime = require "ocean.runtime"
local helpers = require "spec.helpers.emulator"

-- A loop whose wait() calls are recorded.
local function recording(loop, waits)
  return setmetatable({}, { __index = function(_, k)
    return function(_, ...)
      if k == "wait" then waits[#waits + 1] = (...) end
      return loop[k](loop, ...)
    end
  end })
end

local function fake_ngx(phase, sleeps)
  return {
    get_phase = function() return phase end,
    sleep = function(s)
      sleeps[#sleeps + 1] = s
      local until_ms = core.monotonic_ms() + s * 1000
      while core.monotonic_ms() < until_ms do end
    end,
  }
end

describe("runtime.await", function()
  local emu, loop

  setup(function()
    emu = helpers.start{ quiet = true }
  end)
  teardown(function()
    _G.ngx = nil
    helpers.stop_all()
  end)
  before_each(function()
    emu.clear_faults()
    loop = core.loop_new()
  end)
  after_each(function()
    _G.ngx = nil
    loop:close()
  end)

  it("waits for a transfer's job", function()
    local r = runtime.await(loop, loop:request{ url = emu.url .. "/_emulator/health" })
    assert.are.equal(200, r.status)
  end)

  it("waits until a predicate gives a value", function()
    local job = loop:request{ url = emu.url .. "/_emulator/health" }
    local n = 0
    local v = runtime.await(loop, function()
      n = n + 1
      return job:done() and job:result().status or nil
    end)
    assert.are.equal(200, v)
    assert.is_true(n >= 2)
  end)

  it("gives up after timeout_ms", function()
    emu.faults{ { path = "^/v1/slow", delay_ms = 500 } }
    local job = loop:request{ url = emu.url .. "/v1/slow" }
    local t0 = core.monotonic_ms()
    local v, err = runtime.await(loop, job, { timeout_ms = 100 })
    assert.is_nil(v)
    assert.are.equal("timeout", err)
    assert.is_true(core.monotonic_ms() - t0 < 400)
  end)

  it("raises on misuse", function()
    assert.has_error(function() runtime.await(nil, 1) end)
    assert.has_error(function() runtime.await(loop, "x") end)
  end)

  it("never blocks the nginx worker: wait(0) and short ngx.sleep steps", function()
    local sleeps, waits = {}, {}
    _G.ngx = fake_ngx("content", sleeps)
    assert.is_true(runtime.in_nginx())
    emu.faults{ { path = "^/v1/slow", delay_ms = 150 } }
    local l = recording(loop, waits)
    local r = runtime.await(l, loop:request{ url = emu.url .. "/v1/slow" })
    assert.are.equal(401, r.status)
    for _, w in ipairs(waits) do assert.are.equal(0, w) end
    assert.are.equal(0.001, sleeps[1])
    assert.are.equal(0.002, sleeps[2])
    local max = 0
    for _, s in ipairs(sleeps) do if s > max then max = s end end
    assert.are.equal(0.02, max)
    assert.is_true(#sleeps < 30, #sleeps)        -- 150 ms in steps up to 20 ms
  end)

  it("sleeps no longer than the next retry is due", function()
    local sleeps = {}
    _G.ngx = fake_ngx("timer", sleeps)
    emu.faults{ { path = "^/v1/r", status = 503, count = 1 } }
    local r = runtime.await(loop, loop:request{ url = emu.url .. "/v1/r",
      retry = { base_delay_ms = 5 } })
    assert.are.equal(2, r.attempts)
    for _, s in ipairs(sleeps) do assert.is_true(s <= 0.02) end
    assert.is_true(#sleeps < 20)
  end)

  it("blocks in a phase that cannot yield", function()
    local sleeps, waits = {}, {}
    _G.ngx = fake_ngx("init_worker", sleeps)
    assert.is_false(runtime.in_nginx())
    local l = recording(loop, waits)
    assert.are.equal(200, runtime.await(l, loop:request{
      url = emu.url .. "/_emulator/health" }).status)
    assert.are.equal(0, #sleeps)
    assert.are.equal(runtime.BLOCK_MS, waits[1])
  end)
end)
