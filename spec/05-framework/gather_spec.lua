-- ocean.gather / ocean.map standalone: bounded concurrency, counted on the
-- server's side (the fake API's /slow holds each request 100 ms and
-- counts those it holds), errors and cancellation, and use inside a
-- resync generator against the emulator. The same in nginx:
-- spec/08-openresty/live_spec.lua.
local core = require "ocean.core"
local engine = require "ocean.engine"
local json = require "ocean.json"
local runtime = require "ocean.runtime"
local ehelp = require "spec.helpers.emulator"
local fake = require "spec.helpers.fake_api"
local oh = require "spec.helpers.ocean"

describe("ocean.gather", function()
  local api, eng

  setup(function() api = fake.start() end)
  teardown(function()
    fake.stop_all()
    ehelp.stop_all()
  end)
  before_each(function()
    api.call("DELETE", "/_slow")
    eng = engine.new()
    eng:get_loop():set_concurrency(50)
  end)
  after_each(function() eng:close() end)

  local function counts()
    local _, c = api.call("GET", "/_slow")
    return c
  end

  local function fetch(id, ms)
    local body = assert(eng:http().get_json(("%s/slow?ms=%d&id=%s"):format(api.url, ms or 100, id)))
    return body.id
  end

  local function ids(n)
    local t = {}
    for i = 1, n do t[i] = tostring(i) end
    return t
  end

  it("fetches 200 items from a 100 ms server, never more than `concurrency` at once", function()
    local t0 = core.monotonic_ms()
    local got = eng:map(ids(200), function(id) return fetch(id) end, { concurrency = 10 })
    local ms = core.monotonic_ms() - t0
    assert.are.equal(200, got.n)
    assert.are.same(ids(200), got)
    local c = counts()
    assert.are.same({ 200, 10, 0 }, { c.served, c.max_in_flight, c.in_flight })
    -- 20 rounds of 100 ms at the least; sequential would be 20 s
    assert.is_true(ms >= 2000 - 50, "took " .. ms .. " ms")
    assert.is_true(ms < 8000, "took " .. ms .. " ms")
  end)

  it("is bounded by the loop's own concurrency when that is smaller", function()
    eng:get_loop():set_concurrency(4)
    eng:map(ids(24), function(id) return fetch(id, 50) end, { concurrency = 10 })
    assert.are.same({ 24, 4 }, { counts().served, counts().max_in_flight })
  end)

  it("runs everything at once without a bound, and keeps the results in order with holes", function()
    local r = eng:gather {
      function() fetch("a", 200) return "a", "ignored" end,
      function() fetch("b", 100) return nil end,
      function() return false end,
    }
    assert.are.same({ [1] = "a", [3] = false }, r)
    -- n from the metatable: pairs (and so json, and a resync page check)
    -- see the plain list only
    assert.are.equal(3, r.n)
    local keys = {}
    for k in pairs(r) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.are.same({ 1, 3 }, keys)
    assert.are.equal(2, counts().max_in_flight)
  end)

  it("raises the first error unchanged, starts nothing more and cancels the running ones", function()
    local started, cleaned = {}, {}
    local fns = {}
    for i = 1, 10 do
      fns[i] = function()
        started[#started + 1] = i
        local ok, err = pcall(fetch, tostring(i), i == 2 and 50 or 2000)
        if not ok then
          cleaned[#cleaned + 1] = i
          error(err, 0)
        end
        if i == 2 then error({ code = "boom", i = i }) end
        return i
      end
    end
    local ok, err = pcall(eng.gather, eng, fns, { concurrency = 3 })
    assert.is_false(ok)
    assert.are.same({ code = "boom", i = 2 }, err)
    assert.are.same({ 1, 2, 3 }, started)           -- nothing after the failure
    table.sort(cleaned)
    assert.are.same({ 1, 3 }, cleaned)              -- cancelled: their pcall saw it
    assert.are.equal(0, eng:get_loop():stats().active)
  end)

  it("returns every outcome with return_errors, cancelling nothing", function()
    local r, errs = eng:gather({
      function() error("first failed", 0) end,
      function() return fetch("2", 100) end,
      function() error("third failed", 0) end,
    }, { return_errors = true, concurrency = 2 })
    assert.are.same({ n = 3, [2] = "2" }, r)
    assert.are.same({ [1] = "first failed", [3] = "third failed" }, errs)
  end)

  it("runs inside a task too, and a gather cancelled from outside cancels its own", function()
    local inner_cleaned = 0
    local outer = eng:spawn(function()
      return eng:gather({
        function()
          return eng:gather({
            function() local ok = pcall(fetch, "x", 3000); inner_cleaned = inner_cleaned + (ok and 0 or 1) end,
            function() local ok = pcall(fetch, "y", 3000); inner_cleaned = inner_cleaned + (ok and 0 or 1) end,
          })
        end,
        function() fetch("z", 100); error("outer failed", 0) end,
      })
    end, { quiet = true })
    eng:await(function() return outer:done() end)
    assert.are.same({ false, "outer failed" }, { outer:result() })
    eng:await(function() return inner_cleaned == 2 end, 5000)
    assert.are.equal(2, inner_cleaned)
    assert.are.equal(0, eng:get_loop():stats().active)
  end)

  it("names bad arguments", function()
    assert.has_error(function() eng:gather("x") end, "ocean.gather: expected a list, got string")
    assert.has_error(function() eng:gather({ 1 }) end,
      "ocean.gather: item 1 is a number, expected a function")
    assert.has_error(function() eng:gather({}, { concurrency = 0 }) end,
      "ocean.gather: concurrency must be a whole number >= 1, got 0")
    assert.has_error(function() eng:map({}, 5) end, "ocean.map: expected a function, got number")
    assert.has_error(function() eng:map({}, print, { concurrency = 1.5 }) end,
      "ocean.map: concurrency must be a whole number >= 1, got 1.5")
    assert.are.same({ n = 0 }, eng:gather({}))
  end)

  it("is what runtime.CANCELLED says when a cancelled function looks", function()
    assert.are.equal("cancelled", tostring(runtime.CANCELLED))
  end)

  describe("inside a resync generator", function()
    local emu
    setup(function() emu = require("spec.helpers.emulator").start() end)
    teardown(function() emu.stop() end)

    it("fetches each page's details concurrently while the resync goes on", function()
      local ctx, ocean = oh.setup(emu, {
        blueprints = { { identifier = "item", title = "Item", schema = { properties = {
          detail = { type = "string" } } } } },
        mapping = { resources = json.array { { kind = "item", selector = { query = "true" },
          port = { entity = { mappings = { identifier = ".id", blueprint = '"item"',
            properties = { detail = ".detail" } } } } } } },
        env = { OCEAN__PORT__CONCURRENCY = "20" },
      })
      ocean.on_resync("item", function()
        for page = 0, 2 do
          local list = {}
          for i = 1, 10 do list[i] = tostring(page * 10 + i) end
          coroutine.yield(ocean.map(list, function(id)
            local d = assert(ocean.http.get_json(api.url .. "/slow?ms=100&id=" .. id))
            return { id = "item-" .. id, detail = "detail of " .. d.id }
          end, { concurrency = 5 }))
        end
      end)
      -- in a task beside another, and nested in the main thread
      local task = ctx:spawn(function() return ocean.sync_raw_all() end)
      local side = ctx:spawn(function() return ocean.http.get_json(api.url .. "/slow?ms=300&id=side") end)
      ctx:await(function() return task:done() and side:done() end)
      local ok, summary = task:result()
      assert.is_true(ok, tostring(summary))
      assert.is_true(summary.ok, json.encode(summary.errors))
      assert.are.equal(30, summary.created)
      local ents = emu.entities("item")
      assert.are.equal(30, #ents)
      local c = counts()
      assert.are.equal(31, c.served)
      assert.is_true(c.max_in_flight >= 5 and c.max_in_flight <= 6, "max " .. c.max_in_flight)
      local summary2 = ocean.sync_raw_all()
      assert.is_true(summary2.ok)
      assert.are.same({ 0, 30 }, { summary2.created, summary2.unchanged })
    end)
  end)
end)
