-- ocean.Job: the one handle of an asynchronous operation (a loop request,
-- a Port job, a sync session's phase): done, result, cancel, collection.
local core = require "ocean.core"
local runtime = require "ocean.runtime"
local helpers = require "spec.helpers.emulator"

describe("ocean.Job", function()
  local emu, loop

  setup(function() emu = helpers.start{ quiet = true } end)
  teardown(function() helpers.stop_all() end)
  before_each(function()
    emu.clear_faults()
    loop = core.loop_new()
  end)
  after_each(function() loop:close() end)

  local function health() return loop:request{ url = emu.url .. "/_emulator/health" } end

  it("is pending, then done, and gives the same result every time", function()
    local job = health()
    assert.matches("^ocean.Job %(request, pending%)", tostring(job))
    assert.are.same({ nil, "pending" }, { job:result() })
    assert.is_false(job:done())
    local r = runtime.await(loop, job)
    assert.are.equal(200, r.status)
    assert.is_true(job:done())
    assert.are.equal(r, job:result())
    assert.are.equal(r, job:result())
    assert.is_false(job:cancel())              -- finished: nothing to stop
    assert.are.equal(r, job:result())
  end)

  it("cancels a pending request: no answer arrives, the slot is freed", function()
    emu.faults{ { path = "^/v1/slow", delay_ms = 300 } }
    local job = loop:request{ url = emu.url .. "/v1/slow" }
    loop:wait(20)
    assert.are.equal(1, loop:stats().active)
    assert.is_true(job:cancel())
    assert.are.same({ nil, "cancelled" }, { job:result() })
    assert.is_true(job:done())
    assert.are.equal(0, loop:stats().active)
    assert.matches("cancelled", tostring(job))
  end)

  it("cancels its request when collected pending", function()
    emu.faults{ { path = "^/v1/slow", delay_ms = 300 } }
    do
      local job = loop:request{ url = emu.url .. "/v1/slow" }
      loop:wait(20)
      assert.is_true(job ~= nil)
    end
    assert.are.equal(1, loop:stats().active)
    collectgarbage()
    collectgarbage()
    assert.are.equal(0, loop:stats().active)
  end)

  it("reads as cancelled once its owner is closed", function()
    emu.faults{ { path = "^/v1/slow", delay_ms = 300 } }
    local own = core.loop_new()
    local job = own:request{ url = emu.url .. "/v1/slow" }
    own:close()
    assert.is_true(job:done())
    assert.are.same({ nil, "cancelled" }, { job:result() })
    job:close()
    job:close()                                 -- idempotent
  end)

  it("keeps its owner alive while it lives", function()
    local job
    do
      local own = core.loop_new()
      job = own:request{ url = emu.url .. "/_emulator/health" }
    end
    collectgarbage()
    collectgarbage()
    -- a collected loop would have closed (its __gc), and the job with it
    assert.is_false(job:done())
    assert.are.same({ nil, "pending" }, { job:result() })
  end)

  it("is what a Port client's calls return", function()
    local p = assert(core.port_new(loop, { base_url = emu.url, client_id = emu.client_id,
      client_secret = emu.client_secret, integration_type = "spec",
      integration_identifier = "job-spec", integration_version = "1.0.0" }))
    local job = p:call{ method = "GET", path = "/blueprints/nope" }
    assert.are.equal(core.job_mt, getmetatable(job))
    local r = runtime.await(loop, job)
    assert.are.same({ 404, "not_found" }, { r.status, r.error.code })
    local pending = p:call{ method = "GET", path = "/blueprints" }
    p:close()
    assert.are.same({ nil, "cancelled" }, { pending:result() })
  end)
end)
