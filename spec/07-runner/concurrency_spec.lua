-- `ocean sail` answers each HTTP request in a coroutine of its own: with
-- Port slow (every bulk upsert held 3 s by the emulator), concurrent
-- webhooks wait together, not one behind the other, and the health route
-- answers at once meanwhile (issue 11: before, three webhooks answered
-- after 3, 6 and 9 s and health waited behind them). The live session
-- coalesces the three webhooks' upserts into one bulk request
-- (docs/live-events.md "Coalescing"); the window is set to its maximum
-- (1 s), and the three are sent by one curl process, so that they land in one batch even on
-- a loaded machine.
local json = require "ocean.json"
local burst = require "spec.helpers.burst"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local ITEMS = ehelp.root() .. "/spec/fixtures/items"

describe("ocean sail serving concurrently", function()
  local emu, p, dir

  setup(function()
    emu = ehelp.start { quiet = true }
    dir = ehelp.tmpdir()
    local f = assert(io.open(dir .. "/items.json", "w"))
    f:write("[]")
    f:close()
    local port = sail.free_port()
    p = sail.start({ "sail", ITEMS, "--port", tostring(port), "--host", "127.0.0.1" }, {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__IDENTIFIER = "spec-concurrent",
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json",
      OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
      OCEAN__LIVE_EVENTS__WINDOW_MS = "1000",
    }, { port = port })
    p:wait_ready()
  end)

  teardown(function()
    sail.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  local function wait_all(list)
    return sail.eventually(function()
      local out = {}
      for i, done in ipairs(list) do
        local status, t = done()
        if not status then return nil end
        out[i] = { status, t }
      end
      return out
    end, 40, "the answers")
  end

  it("lets no webhook wait behind another's Port call, and answers health at once", function()
    emu.clear_requests()
    emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 3000 } }
    -- the three webhooks from one curl process, three transfers at once
    -- (three curl processes could start over a second apart on a loaded
    -- machine, past the window)
    local reqs = {}
    for i = 1, 3 do
      reqs[i] = { url = p.url .. "/integration/items", tag = "c" .. i,
        headers = { ["Content-Type"] = "application/json" },
        body = json.encode { id = "c" .. i, name = "Concurrent " .. i } }
    end
    local b = burst.start(reqs, { parallel = 3, processes = 1, timeout = 40 })
    -- the three webhooks' upserts reach Port together, in one bulk request
    sail.eventually(function() return #emu.bulk_upserts() > 0 end, 10, "a bulk upsert in flight")
    local health = wait_all { p:background("GET", "/integration/health", nil, {}) }[1]
    local answers = {}
    for _, r in ipairs(b.wait(40)) do answers[#answers + 1] = { r.status, r.seconds } end
    b.cleanup()
    assert.are.equal(3, #answers)
    emu.faults()
    assert.are.equal(200, health[1])
    assert.is_true(health[2] < 1, "health took " .. health[2] .. " s")
    local sent = emu.bulk_upserts()
    assert.are.equal(1, #sent, "one bulk request for the three webhooks")
    assert.are.equal(3, sent[1].entities)
    for i, a in ipairs(answers) do
      assert.are.equal(200, a[1])
      -- each waited for Port once (3 s, plus at most the 1 s window):
      -- never behind another webhook's hold (6 or 9 s)
      assert.is_true(a[2] >= 2.9 and a[2] < 5.5, ("webhook %d took %.2f s"):format(i, a[2]))
    end
    local ents = emu.entities("specItem")
    assert.are.equal(3, #ents)
  end)
end)
