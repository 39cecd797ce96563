-- The event loop and its HTTP transport (src/net/loop.c, src/net/transport.c),
-- against the Port emulator on an ephemeral loopback port.
local core = require "ocean.core"
local runtime = require "ocean.runtime"
local helpers = require "spec.helpers.emulator"

local function fetch(loop, req)
  return runtime.await(loop, loop:request(req))
end

describe("retry header parsing", function()
  local now = 1700000000
  local cases = {
    { "1", 1000 }, { "0", 0 }, { " 2 ", 2000 }, { "0.25", 250 },
    { "10000", 10000000 },
    { "100000", 100000000 },                -- Retry-After: always seconds
    { tostring(now + 3), 1000000000000 },   -- (capped at 1e9 s)
    { "Tue, 14 Nov 2023 22:13:25 GMT", 5000 },   -- IMF-fixdate (now + 5)
    { "Tuesday, 14-Nov-23 22:13:25 GMT", 5000 }, -- RFC 850
    { "Tue Nov 14 22:13:25 2023", 5000 },        -- asctime
    { "Tue, 14 Nov 2023 22:13:00 GMT", 0 },      -- in the past
  }
  for _, c in ipairs(cases) do
    it(("reads %q as %d ms"):format(c[1], c[2]), function()
      assert.are.equal(c[2], core.retry_delay_ms(c[1], now))
    end)
  end
  -- x-ratelimit-reset: a number above 10000 is an epoch, as Ocean reads it
  for _, c in ipairs({ { "10000", 10000000 }, { tostring(now + 3), 3000 },
                       { tostring(now - 5), 0 } }) do
    it(("reads x-ratelimit-reset %q as %d ms"):format(c[1], c[2]), function()
      assert.are.equal(c[2], core.retry_delay_ms(c[1], now, "x-ratelimit-reset"))
    end)
  end
  for _, bad in ipairs({ "", "soon", "1s", "-1", "1 2" }) do
    it(("rejects %q"):format(bad), function()
      assert.is_nil(core.retry_delay_ms(bad, now))
    end)
  end
end)

describe("loop", function()
  local emu, loop

  setup(function()
    emu = helpers.start{ quiet = true }
  end)
  teardown(function()
    if loop then loop:close() end
    helpers.stop_all()
  end)
  before_each(function()
    emu.clear_faults()
    emu.clear_requests()
    loop = core.loop_new{ concurrency = 3 }
  end)
  after_each(function()
    loop:close()
    loop = nil
  end)

  describe("transfers", function()
    it("returns status, headers, body and counts", function()
      local r = fetch(loop, { url = emu.url .. "/_emulator/health" })
      assert.are.equal(200, r.status)
      assert.matches("^application/json", r.headers["content-type"])
      assert.is_string(r.headers["x-trace-id"])
      assert.matches('"ok":true', r.body)
      assert.are.equal(1, r.attempts)
      assert.are.equal(0, r.waited_ms)
      assert.is_nil(r.error)
    end)

    it("sends method, headers and body", function()
      local r = fetch(loop, { method = "POST", url = emu.url .. "/v1/auth/access_token",
        headers = { ["Content-Type"] = "application/json", "User-Agent: spec-agent" },
        body = '{"clientId":"' .. emu.client_id .. '","clientSecret":"'
               .. emu.client_secret .. '"}' })
      assert.are.equal(200, r.status)
      assert.matches('"accessToken"', r.body)
      local log = emu.requests()
      assert.are.equal("spec-agent", log[#log].user_agent)
      assert.are.equal("POST", log[#log].method)
    end)

    it("reports a transport error with curl's message", function()
      local r = fetch(loop, { url = "http://127.0.0.1:1/", timeout_ms = 2000 })
      assert.are.equal(0, r.status)
      assert.are.equal(7, r.curl_code)
      assert.matches("Couldn't connect", r.error)
      assert.are.equal(1, r.attempts)
    end)

    it("keeps at most `concurrency` transfers on the wire", function()
      emu.faults{ { path = "^/v1/slow", delay_ms = 60 } }
      local ids = {}
      for i = 1, 10 do ids[i] = loop:request{ url = emu.url .. "/v1/slow/" .. i } end
      local s = loop:stats()
      assert.are.equal(10, s.queued)
      assert.are.equal(0, s.active)
      for i = 1, 10 do assert.are.equal(401, runtime.await(loop, ids[i]).status) end
      s = loop:stats()
      assert.are.equal(3, s.peak_active)
      assert.are.equal(10, s.completed)
      assert.are.equal(10, #emu.requests())
    end)

    it("lets an urgent transfer jump the queue", function()
      loop:set_concurrency(1)
      emu.faults{ { path = "^/v1/q/1$", delay_ms = 50 } }
      local ids = {}
      for i = 1, 4 do ids[i] = loop:request{ url = emu.url .. "/v1/q/" .. i } end
      ids[5] = loop:request{ url = emu.url .. "/v1/q/urgent", urgent = true }
      for i = 1, 5 do runtime.await(loop, ids[i]) end
      local order = {}
      for _, e in ipairs(emu.requests()) do order[#order + 1] = e.path end
      assert.are.same({ "/v1/q/urgent", "/v1/q/1", "/v1/q/2", "/v1/q/3", "/v1/q/4" },
                      order)
    end)

    it("forgets a cancelled transfer", function()
      emu.faults{ { path = "^/v1/c", delay_ms = 200 } }
      local job = loop:request{ url = emu.url .. "/v1/c" }
      loop:wait(20)
      assert.is_true(job:cancel())
      assert.is_false(job:cancel())
      assert.are.same({ nil, "cancelled" }, { job:result() })
      assert.are.equal(0, loop:stats().active)
    end)

    it("fails a response above max_response_bytes without retrying", function()
      local r = fetch(loop, { url = emu.url .. "/_emulator/health",
        max_response_bytes = 10, retry = true })
      assert.are.equal(1, r.attempts)
      assert.matches("response larger than 10 bytes", r.error)
    end)

    it("raises on misuse", function()
      assert.has_error(function() loop:request{} end)
      assert.has_error(function() loop:request{ url = "http://x/", headers = { "A: b\r\nC: d" } } end,
                       "header contains CR or LF")
      assert.has_error(function() loop:request{ url = "http://x/", retry = { max_attempts = 0 } } end)
      assert.has_error(function() core.loop_new{ concurrency = 0 } end)
    end)

    it("says how long a caller may sleep", function()
      assert.are.equal(-1, loop:next_timeout())
      loop:request{ url = emu.url .. "/v1/t" }
      assert.are.equal(0, loop:next_timeout())        -- queued, slot free
    end)

    it("is unusable once closed, and close is idempotent", function()
      local l = core.loop_new()
      l:close()
      l:close()
      assert.has_error(function() l:request{ url = "http://x/" } end,
                       "attempt to use a closed loop")
      assert.matches("closed", tostring(l))
    end)
  end)

  describe("retries", function()
    local fast = { base_delay_ms = 20 }

    it("waits what Retry-After asks on 429", function()
      emu.faults{ { path = "^/v1/r", status = 429, retry_after = "1", count = 1 } }
      local r = fetch(loop, { url = emu.url .. "/v1/r", retry = fast })
      assert.are.equal(401, r.status)            -- the API's answer, no token
      assert.are.equal(2, r.attempts)
      assert.is_true(r.waited_ms >= 1000)
      assert.is_true(r.elapsed_ms >= 1000)
    end)

    it("reads a fractional Retry-After and an HTTP-date", function()
      emu.faults{ { path = "^/v1/r", status = 429, retry_after = "0.2", count = 2 } }
      local r = fetch(loop, { url = emu.url .. "/v1/r", retry = fast })
      assert.are.equal(3, r.attempts)
      assert.is_true(r.waited_ms >= 400 and r.waited_ms < 1000)
      emu.faults{ { path = "^/v1/d", status = 503, retry_after_date = 2, count = 1 } }
      r = fetch(loop, { url = emu.url .. "/v1/d", retry = fast })
      assert.are.equal(2, r.attempts)
      assert.is_true(r.waited_ms >= 1000 and r.waited_ms <= 2000)
    end)

    it("honours x-ratelimit-reset in seconds and as an epoch", function()
      emu.faults{ { path = "^/v1/x", status = 429, ratelimit_reset = "0.3", count = 1 } }
      local r = fetch(loop, { url = emu.url .. "/v1/x", retry = fast })
      assert.are.equal(2, r.attempts)
      assert.is_true(r.waited_ms >= 300 and r.waited_ms < 1000)
      emu.faults{ { path = "^/v1/e", status = 429, ratelimit_reset_in = 2, count = 1 } }
      r = fetch(loop, { url = emu.url .. "/v1/e", retry = fast })
      assert.are.equal(2, r.attempts)
      assert.is_true(r.waited_ms >= 1000 and r.waited_ms <= 2000)
    end)

    it("backs off exponentially with jitter on 503", function()
      emu.faults{ { path = "^/v1/b", status = 503, count = 3 } }
      local r = fetch(loop, { url = emu.url .. "/v1/b",
                              retry = { base_delay_ms = 50 } })
      assert.are.equal(4, r.attempts)
      -- 50 + 100 + 200, each +-10 %
      assert.is_true(r.waited_ms >= 315 and r.waited_ms <= 385, r.waited_ms)
    end)

    it("retries a dropped connection", function()
      emu.faults{ { path = "^/v1/drop", drop = true, count = 1 } }
      local r = fetch(loop, { url = emu.url .. "/v1/drop", retry = fast })
      assert.are.equal(401, r.status)
      assert.are.equal(2, r.attempts)
    end)

    it("reports a dropped connection as an empty reply without the policy", function()
      -- (on a reused keep-alive connection libcurl itself resends once;
      -- this loop's first connection is fresh)
      emu.faults{ { path = "^/v1/drop", drop = true, count = 1 } }
      local r = fetch(loop, { url = emu.url .. "/v1/drop",
                        retry = { base_delay_ms = 20, connection_errors = false } })
      assert.are.equal(0, r.status)
      assert.are.equal(1, r.attempts)
      assert.are.equal(52, r.curl_code)         -- empty reply
    end)

    it("retries a refused connection", function()
      local r = fetch(loop, { url = "http://127.0.0.1:1/",
                              retry = { base_delay_ms = 10, max_attempts = 3 } })
      assert.are.equal(3, r.attempts)
      assert.are.equal(7, r.curl_code)
    end)

    it("does not retry without a policy, nor 500 and 413", function()
      emu.faults{ { path = "^/v1/n", status = 503, count = 1 } }
      assert.are.equal(503, fetch(loop, { url = emu.url .. "/v1/n" }).status)
      for _, st in ipairs({ 500, 413 }) do
        emu.faults{ { path = "^/v1/n", status = st, count = 1 } }
        local r = fetch(loop, { url = emu.url .. "/v1/n", retry = fast })
        assert.are.equal(st, r.status)
        assert.are.equal(1, r.attempts)
      end
    end)

    it("stops when the next wait would pass the total cap", function()
      emu.faults{ { path = "^/v1/cap", status = 503 } }
      local r = fetch(loop, { url = emu.url .. "/v1/cap",
        retry = { base_delay_ms = 100, max_total_wait_ms = 500 } })
      assert.are.equal(503, r.status)
      assert.are.equal(3, r.attempts)            -- 100 + 200; 400 more is too much
      assert.is_true(r.waited_ms <= 500)
    end)

    it("gives up at once when Retry-After asks for more than one wait may be", function()
      emu.faults{ { path = "^/v1/m", status = 429, retry_after = "100", count = 1 } }
      local r = fetch(loop, { url = emu.url .. "/v1/m",
        retry = { base_delay_ms = 10, max_delay_ms = 150 } })
      assert.are.equal(429, r.status)
      assert.are.equal(1, r.attempts)            -- never retried before it allows
      assert.are.equal(0, r.waited_ms)
    end)

    it("gives up at once when Retry-After passes the retry budget, and says so", function()
      -- a huge number is seconds (RFC 9110), never an epoch: the old
      -- reading made it "0 ms" and 11 sends in 0.3 s
      emu.faults{ { path = "^/v1/m", status = 429, retry_after = "100000", count = 1 } }
      loop:record{ retries = true }
      local done
      local r = runtime.await(loop, loop:request{ url = emu.url .. "/v1/m",
        retry = { base_delay_ms = 10, max_total_wait_ms = 5000 } }, { on_events = function(evs)
          for _, e in ipairs(evs) do if e.type == "request" then done = e end end
        end })
      loop:record{}
      assert.are.equal(429, r.status)
      assert.are.equal(1, r.attempts)
      assert.is_truthy(done, "a gave-up event")
      assert.is_true(done.gave_up)
      assert.are.equal(100000000, done.asked_ms)
    end)

    it("waits what Retry-After asks when it fits, and backs off on 0 or a past date", function()
      emu.faults{ { path = "^/v1/ra", status = 429, retry_after = "0.3", count = 1 } }
      local r = fetch(loop, { url = emu.url .. "/v1/ra", retry = { base_delay_ms = 10 } })
      assert.are.equal(2, r.attempts)
      assert.are.equal(300, r.waited_ms)
      for _, v in ipairs({ "0", "Tue, 14 Nov 2023 22:13:00 GMT" }) do
        emu.faults{ { path = "^/v1/rz", status = 503, retry_after = v, count = 2 } }
        r = fetch(loop, { url = emu.url .. "/v1/rz", retry = { base_delay_ms = 40 } })
        assert.are.equal(3, r.attempts)
        assert.is_true(r.waited_ms >= 108, v .. ": " .. r.waited_ms)   -- 40 + 80, -10 %
      end
    end)

    it("keeps every retry event, however many come between two waits", function()
      -- the queue used to hold 64 and drop the rest ("N request events
      -- were not logged"); retries must never go unsaid
      loop:set_concurrency(150)
      emu.faults{ { path = "^/v1/many", status = 503, count = 150 } }
      loop:record{ retries = true }
      local jobs, retries, dropped = {}, 0, 0
      for i = 1, 150 do
        jobs[i] = loop:request{ url = emu.url .. "/v1/many" .. i,
                                retry = { base_delay_ms = 1, max_attempts = 2 } }
      end
      for i = 1, 150 do
        runtime.await(loop, jobs[i], { on_events = function(evs)
          for _, e in ipairs(evs) do
            if e.type == "retry" then retries = retries + 1 end
            if e.type == "dropped" then dropped = dropped + e.count end
          end
        end })
      end
      loop:record{}
      loop:set_concurrency(5)
      assert.are.same({ 150, 0 }, { retries, dropped })
    end)

    it("keeps the slot free while waiting to retry", function()
      loop:set_concurrency(1)
      emu.faults{ { path = "^/v1/w1$", status = 429, retry_after = "0.3", count = 1 } }
      local a = loop:request{ url = emu.url .. "/v1/w1", retry = fast }
      local b = loop:request{ url = emu.url .. "/v1/w2" }
      local rb = runtime.await(loop, b)
      assert.are.equal(401, rb.status)
      assert.is_nil((a:result()))                -- still waiting to retry
      assert.are.equal(2, runtime.await(loop, a).attempts)
      local order = {}
      for _, e in ipairs(emu.requests()) do order[#order + 1] = e.path end
      assert.are.same({ "/v1/w1", "/v1/w2", "/v1/w1" }, order)
    end)
  end)

  describe("waiting", function()
    it("returns at once with timeout 0 and nothing to do", function()
      local t0 = core.monotonic_ms()
      assert.is_nil((loop:wait(0)))
      assert.is_nil((loop:wait(-1)))             -- nothing could ever happen
      assert.is_true(core.monotonic_ms() - t0 < 50)
    end)

    it("serves an in-process server while transfers run", function()
      local srv = assert(core.server_start{ host = "127.0.0.1", port = 0 })
      local job = loop:request{ url = "http://127.0.0.1:" .. srv:port() .. "/hook",
                               method = "POST", body = "ping" }
      local res
      for _ = 1, 200 do
        loop:wait(50, { srv })
        local req = srv:next()
        if req then
          assert.are.equal("/hook", req.path)
          assert.are.equal("ping", req.body)
          srv:respond(req.id, 201, { ["x-served"] = "yes" }, "pong")
        end
        res = job:done() and job:result()
        if res then break end
      end
      srv:close()
      assert.are.equal(201, res.status)
      assert.are.equal("pong", res.body)
      assert.are.equal("yes", res.headers["x-served"])
    end)

    it("reports watched signals and restores the mask on close", function()
      local pid = assert(helpers.read_file("/proc/self/stat")):match("^(%d+)")
      assert(loop:watch_signals())
      os.execute("kill -HUP " .. pid)
      local events
      for _ = 1, 20 do
        events = loop:wait(100)
        if events then break end
      end
      assert.are.same({ { type = "signal", signal = 1, name = "SIGHUP" } }, events)
    end)
  end)
end)
