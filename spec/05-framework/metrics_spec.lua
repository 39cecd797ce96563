-- ocean.metrics: the registry, the stores and the text exposition format,
-- checked by a strict Prometheus text parser (spec/helpers/prometheus.lua).
local metrics = require "ocean.metrics"
local prom = require "spec.helpers.prometheus"

describe("ocean.metrics", function()
  it("renders gauges and counters with HELP, TYPE and samples, exactly", function()
    local reg = metrics.new()
    local g = reg:gauge("object_count", "Objects per kind", { "kind", "phase" })
    local c = reg:counter("ocean_port_requests_total", "Port requests", { "endpoint", "status" })
    g:set({ kind = "repo-0", phase = "extract" }, 120)
    g:inc({ "repo-0", "load" }, 2.5)
    c:inc({ endpoint = "/v1/blueprints/{blueprint}/entities/bulk", status = 200 })
    c:inc({ endpoint = "/v1/blueprints/{blueprint}/entities/bulk", status = 200 }, 2)
    reg:gauge("ocean_journal_depth", "Events not applied yet")
    assert.are.equal(table.concat({
      "# HELP object_count Objects per kind",
      "# TYPE object_count gauge",
      'object_count{kind="repo-0",phase="extract"} 120',
      'object_count{kind="repo-0",phase="load"} 2.5',
      "# HELP ocean_journal_depth Events not applied yet",
      "# TYPE ocean_journal_depth gauge",
      "# HELP ocean_port_requests_total Port requests",
      "# TYPE ocean_port_requests_total counter",
      'ocean_port_requests_total{endpoint="/v1/blueprints/{blueprint}/entities/bulk",status="200"} 3',
      "" }, "\n"), reg:render())
    assert.are.equal(3, c:get({ endpoint = "/v1/blueprints/{blueprint}/entities/bulk", status = "200" }))
    assert.is_nil(g:get({ kind = "other-1", phase = "load" }))
  end)

  it("renders nothing for an empty registry", function()
    assert.are.equal("", metrics.new():render())
  end)

  local escapes = {
    { "plain", "plain" },
    { 'quote " inside', 'quote \\" inside' },
    { "back\\slash", "back\\\\slash" },
    { "new\nline", "new\\nline" },
    { "all \\\"\n of them\\n", 'all \\\\\\"\\n of them\\\\n' },
    { "ünïcödé {}=,", "ünïcödé {}=," },
    { "", "" },
  }
  for _, case in ipairs(escapes) do
    it(("escapes the label value %q and the parser reads it back"):format(case[1]), function()
      local reg = metrics.new()
      reg:gauge("g", "help", { "kind" }):set({ kind = case[1] }, 1)
      local text = reg:render()
      assert.are.equal('g{kind="' .. case[2] .. '"} 1\n', text:match("\n(g{.*)$"))
      local r = prom.parse(text)
      assert.are.equal(1, prom.value(r, "g", { kind = case[1] }))
    end)
  end

  it("escapes backslashes and newlines in HELP", function()
    local reg = metrics.new()
    reg:gauge("g", "a \\ b\nc \"q\"")
    local text = reg:render()
    assert.are.equal('# HELP g a \\\\ b\\nc "q"\n# TYPE g gauge\n', text)
    assert.are.equal('a \\ b\nc "q"', prom.parse(text).families.g.help)
  end)

  local values = {
    { 0, "0" }, { 42, "42" }, { -7, "-7" }, { 0.1, "0.1" }, { 1e300, "1e+300" }, { 0.009, "0.009" },
    { 1 / 3, "0.3333333333333333" }, { 0.1 + 0.2, "0.30000000000000004" },
    { 2 ^ 53, "9007199254740992" }, { math.huge, "+Inf" }, { -math.huge, "-Inf" }, { 0 / 0, "NaN" },
  }
  for _, case in ipairs(values) do
    it("writes the value " .. case[2], function()
      assert.are.equal(case[2], metrics.format_value(case[1]))
      local reg = metrics.new()
      reg:gauge("g", "h"):set(nil, case[1])
      local v = prom.value(prom.parse(reg:render()), "g")
      if case[1] ~= case[1] then assert.is_true(v ~= v) else assert.are.equal(case[1], v) end
    end)
  end

  it("keeps one family per name, families and samples in a stable order", function()
    local function build(order)
      local reg = metrics.new()
      local fams = { b = reg:gauge("b_metric", "b", { "k" }), a = reg:counter("a_total", "a", { "k" }) }
      for _, step in ipairs(order) do fams[step[1]]:inc({ k = step[2] }, 1) end
      return reg:render()
    end
    local one = build { { "b", "z" }, { "a", "y" }, { "b", "a" }, { "a", "b" }, { "b", "m" } }
    local two = build { { "a", "b" }, { "b", "m" }, { "a", "y" }, { "b", "z" }, { "b", "a" } }
    assert.are.equal(one, two)
    local r = prom.parse(one)
    assert.are.same({ "a_total", "b_metric" }, r.order)
    local ks = {}
    for i, s in ipairs(r.families.b_metric.samples) do ks[i] = s.labels.k end
    assert.are.same({ "a", "m", "z" }, ks)
  end)

  it("returns the same metric when declared again alike, and refuses a different one", function()
    local reg = metrics.new()
    local g = reg:gauge("g", "h", { "a" })
    assert.are.equal(g, reg:gauge("g", "h", { "a" }))
    assert.has_error(function() reg:counter("g", "h", { "a" }) end,
      "metric g is already declared as a gauge with other help or labels")
    assert.has_error(function() reg:gauge("g", "h", { "b" }) end,
      "metric g is already declared as a gauge with other help or labels")
  end)

  local misuse = {
    { function(reg) reg:gauge("1bad", "h") end, "invalid metric name 1bad" },
    { function(reg) reg:gauge("bad-name", "h") end, "invalid metric name bad-name" },
    { function(reg) reg:gauge("g", "h", { "__reserved" }) end, "metric g: invalid label name __reserved" },
    { function(reg) reg:gauge("g", "h", { "a-b" }) end, "metric g: invalid label name a-b" },
    { function(reg) reg:gauge("g", "h", { "a", "a" }) end, "metric g: label a twice" },
    { function(reg) reg:gauge("g", nil) end, "metric g needs a help text" },
    { function(reg) reg:gauge("g", "h", { "a" }):set({}, 1) end, "metric g: label a is missing" },
    { function(reg) reg:gauge("g", "h", { "a" }):set({ a = 1, b = 2 }, 1) end, "metric g has no label b" },
    { function(reg) reg:gauge("g", "h", { "a" }):set({ 1, 2 }, 1) end, "metric g: 2 label values for 1 labels" },
    { function(reg) reg:gauge("g", "h", { "a" }):set(nil, 1) end, "metric g needs its labels (a)" },
    { function(reg) reg:gauge("g", "h"):set({ a = 1 }, 1) end, "metric g has no labels" },
    { function(reg) reg:gauge("g", "h"):set(nil, "1") end, "metric g: value must be a number, got string" },
    { function(reg) reg:counter("c", "h"):inc(nil, -1) end, "counter c: increment must be >= 0, got -1" },
    { function(reg) reg:counter("c", "h"):set(nil, 1) end, "metric c is a counter: use inc" },
  }
  for _, case in ipairs(misuse) do
    it("raises on misuse: " .. case[2], function()
      assert.has_error(function() case[1](metrics.new()) end, case[2])
    end)
  end

  it("declares Ocean's metrics with Ocean's names and labels", function()
    local reg = metrics.new()
    local m = metrics.declare_ocean(reg)
    local want = {
      object_count = { "kind", "phase", "object_count_type" },
      upserted_count = { "kind", "phase" }, deleted_count = { "kind", "phase" },
      failed_count = { "kind", "phase" }, error_count = { "kind", "phase" },
      input_count = { "kind", "phase" }, success = { "kind", "phase" },
      duration_seconds = { "kind", "phase" },
      http_requests_count = { "endpoint", "kind", "phase", "status" },
      rate_limit_wait_seconds = { "kind", "phase", "endpoint" },
    }
    for name, labels in pairs(want) do
      assert.are.same(labels, m[name].labelnames, name)
      assert.are.equal("gauge", m[name].type, name)
    end
    m.object_count:set({ "repository-0", "extract", "raw_extracted" }, 30)
    m.duration_seconds:inc({ kind = "repository-0", phase = metrics.PHASES.RESYNC }, 1.5)
    m.http_requests_count:inc({ endpoint = "https://api.github.com/orgs/x/repos?page=2",
                                kind = "repository-0", phase = "extract", status = "200" })
    local r = prom.parse(reg:render())
    assert.are.equal(30, prom.value(r, "object_count",
      { kind = "repository-0", phase = "extract", object_count_type = "raw_extracted" }))
    assert.are.equal(1.5, prom.value(r, "duration_seconds", { kind = "repository-0", phase = "resync" }))
    assert.are.equal(1, prom.value(r, "http_requests_count", { endpoint = "https://api.github.com/orgs/x/repos?page=2",
      kind = "repository-0", phase = "extract", status = "200" }))
    for _, name in ipairs { "deleted_count", "error_count", "rate_limit_wait_seconds" } do
      assert.are.equal("gauge", r.families[name].type)
      assert.are.same({}, r.families[name].samples)
    end
    local ours = metrics.declare(reg, metrics.LUA_OCEAN)
    ours.ocean_live_events_total:inc({ state = "queued" }, 3)
    ours.ocean_journal_depth:set(nil, 2)
    r = prom.parse(reg:render())
    assert.are.equal("counter", r.families.ocean_live_events_total.type)
    assert.are.equal(3, prom.value(r, "ocean_live_events_total", { state = "queued" }))
    assert.are.equal(2, prom.value(r, "ocean_journal_depth"))
  end)

  it("clears one metric's samples and no other's", function()
    local reg = metrics.new()
    local a, ab = reg:gauge("a", "h", { "k" }), reg:gauge("a_b", "h", { "k" })
    a:set({ k = "1" }, 1)
    a:set({ k = "2" }, 2)
    ab:set({ k = "1" }, 3)
    a:clear()
    local r = prom.parse(reg:render())
    assert.are.same({}, r.families.a.samples)
    assert.are.equal(3, prom.value(r, "a_b", { k = "1" }))
  end)

  it("keeps its state in the store it was given, not in the module", function()
    local s1, s2 = metrics.table_store(), metrics.table_store()
    local r1, r2 = metrics.new { store = s1 }, metrics.new { store = s2 }
    r1:counter("c", "h"):inc()
    r2:counter("c", "h"):inc(nil, 5)
    assert.are.equal(1, r1:counter("c", "h"):get())
    assert.are.equal(5, r2:counter("c", "h"):get())
    -- two registries over one store see the same numbers (nginx workers)
    local r3 = metrics.new { store = s1 }
    assert.are.equal(1, r3:counter("c", "h"):get())
  end)

  describe("over an ngx.shared.DICT", function()
    -- The dict's documented behaviour, in Lua (the real one is exercised in
    -- spec/08-openresty/metrics_spec.lua).
    local function fake_dict(capacity)
      local d = { data = {}, n = 0 }
      function d.get(self, k) return self.data[k] end
      function d.set(self, k, v)
        if self.data[k] == nil then
          if self.n >= capacity then return false, "no memory" end
          self.n = self.n + 1
        end
        self.data[k] = v
        return true
      end
      function d.incr(self, k, v, init)
        if self.data[k] == nil then
          if init == nil then return nil, "not found" end
          local ok, err = self:set(k, init)
          if not ok then return nil, err end
        end
        self.data[k] = self.data[k] + v
        return self.data[k]
      end
      function d.delete(self, k)
        if self.data[k] ~= nil then self.n = self.n - 1 end
        self.data[k] = nil
      end
      function d.get_keys(self, max)
        assert(max == 0)
        local out = {}
        for k in pairs(self.data) do out[#out + 1] = k end
        return out
      end
      return d
    end

    it("stores samples under its prefix, next to other keys", function()
      local dict = fake_dict(100)
      dict:set("resync:lock", "123:4")
      local reg = metrics.new { store = metrics.shared_dict_store(dict) }
      local g = reg:gauge("g", "h", { "k" })
      g:set({ k = "x" }, 2)
      g:inc({ k = "y" })
      assert.are.equal(2, dict:get('metric:g{k="x"}'))
      assert.are.equal("123:4", dict:get("resync:lock"))
      local r = prom.parse(reg:render())
      assert.are.same({ "g" }, r.order)
      assert.are.equal(1, prom.value(r, "g", { k = "y" }))
      g:clear()
      assert.are.equal("123:4", dict:get("resync:lock"))
      assert.are.same({}, prom.parse(reg:render()).families.g.samples)
    end)

    it("says when the dict is full instead of raising", function()
      local reg = metrics.new { store = metrics.shared_dict_store(fake_dict(1), "m:") }
      local g = reg:gauge("g", "h", { "k" })
      assert.is_true(g:set({ k = "1" }, 1))
      assert.are.same({ nil, "no memory" }, { g:set({ k = "2" }, 1) })
      assert.are.same({ nil, "no memory" }, { g:inc({ k = "3" }) })
      assert.are.equal(1, prom.value(prom.parse(reg:render()), "g", { k = "1" }))
    end)

    -- Live events (ocean.event_queue's stats) fed by two nginx workers, each
    -- with its own queue and its own engine set over the one dict.
    local function queue(st)
      return { stats = function() return st end }
    end
    local function live(reg)
      local r = prom.parse(reg:render())
      return { prom.value(r, "ocean_live_events_total", { state = "queued" }),
               prom.value(r, "ocean_live_events_total", { state = "processed" }),
               prom.value(r, "ocean_live_events_total", { state = "failed" }),
               prom.value(r, "ocean_journal_depth") }
    end

    -- two workers' engine sets over one dict
    local function two_workers()
      local dict = fake_dict(100)
      return metrics.engine_set(metrics.new { store = metrics.shared_dict_store(dict) }),
             metrics.engine_set(metrics.new { store = metrics.shared_dict_store(dict) })
    end

    it("sums the live-event counts and journal depths of every worker's queue", function()
      local set1, set2 = two_workers()
      local st1 = { received = 5, applied = 3, dead_lettered = 1, depth = 1 }
      local st2 = { received = 2, applied = 0, dead_lettered = 0, depth = 2 }
      local q1, q2 = queue(st1), queue(st2)
      metrics.feed_live(set1, q1, "101")
      metrics.feed_live(set2, q2, "102")
      assert.are.same({ 7, 3, 1, 3 }, live(set1.reg))
      -- fed again with no change: nothing added (increases only)
      metrics.feed_live(set1, q1, "101")
      assert.are.same({ 7, 3, 1, 3 }, live(set2.reg))
      -- worker 1 applies its event, worker 2 one of its two
      st1.applied, st1.depth = 4, 0
      st2.applied, st2.depth = 1, 1
      metrics.feed_live(set1, q1, "101")
      metrics.feed_live(set2, q2, "102")
      assert.are.same({ 7, 5, 1, 1 }, live(set1.reg))
      -- worker 2 dies; worker 1 adopts its journal (now in its own depth)
      metrics.forget_live_worker(set1, "102")
      st1.depth = 1
      metrics.feed_live(set1, q1, "101")
      assert.are.same({ 7, 5, 1, 1 }, live(set1.reg))
      st1.applied, st1.depth = 5, 0
      metrics.feed_live(set1, q1, "101")
      assert.are.same({ 7, 6, 1, 0 }, live(set1.reg))
      -- the shares kept for forget_live_worker are not rendered
      assert.is_nil(set1.reg:render():find("live_journal_depth_of", 1, true))
      metrics.forget_live_worker(set1, "999")      -- unknown: nothing
      assert.are.same({ 7, 6, 1, 0 }, live(set1.reg))
    end)

    it("exports the claims given back and the events naming a kind the mapping lacks", function()
      local set1, set2 = two_workers()
      local st1 = { received = 3, applied = 1, given_back = 2, unknown_kinds = 1 }
      local st2 = { received = 1, applied = 1, given_back = 0, unknown_kinds = 1 }
      local q1, q2 = queue(st1), queue(st2)
      local function extra()
        local r = prom.parse(set1.reg:render())
        return { prom.value(r, "ocean_live_events_total", { state = "given_back" }),
                 prom.value(r, "ocean_live_events_total", { state = "unknown_kind" }) }
      end
      metrics.feed_live(set1, q1, "101")
      metrics.feed_live(set2, q2, "102")
      assert.are.same({ 2, 2 }, extra())
      metrics.feed_live(set1, q1, "101")            -- no change: nothing added
      assert.are.same({ 2, 2 }, extra())
      st1.given_back, st2.unknown_kinds = 3, 4
      metrics.feed_live(set1, q1, "101")
      metrics.feed_live(set2, q2, "102")
      assert.are.same({ 3, 5 }, extra())
      local fam = prom.parse(set1.reg:render()).families.ocean_live_events_total
      assert.are.equal("counter", fam.type)
      assert.are.equal("Live events by state (queued, processed, failed, given_back, unknown_kind)",
        fam.help)
    end)

    it("adds what a full dict refused at the next feed", function()
      local dict = fake_dict(60)
      local set = metrics.engine_set(metrics.new { store = metrics.shared_dict_store(dict) })
      local st = { received = 2, applied = 1, dead_lettered = 0, depth = 1 }
      local q = queue(st)
      for i = 1, 60 do dict:set("other:" .. i, i) end
      metrics.feed_live(set, q)
      assert.are.same({}, live(set.reg))
      for i = 1, 10 do dict:delete("other:" .. i) end
      metrics.feed_live(set, q)
      assert.are.same({ 2, 1, 0, 1 }, live(set.reg))
    end)
  end)

  describe("budget hits", function()
    it("tells the time and memory budgets apart by jqbudget.c's words", function()
      assert.are.equal("time", metrics.budget_of(
        "properties.size: the mapping expression exceeded the time limit (5 s)"))
      assert.are.equal("memory", metrics.budget_of("x: exceeded the memory limit (256 MiB)"))
      assert.are.equal("memory", metrics.budget_of("x: would exceed the memory limit (256 MiB)"))
      assert.is_nil(metrics.budget_of("x: null (null) has no keys"))
      assert.is_nil(metrics.budget_of(nil))
      local counts = metrics.count_budget_hits({
        { index = 1, message = "a: exceeded the time limit (1 s)" },
        { index = 2, message = "b: cannot index string" },
        { index = 3, message = "c: would exceed the memory limit (1 MiB)" },
        { index = 4, message = "d: exceeded the time limit (1 s)" } })
      assert.are.same({ time = 2, memory = 1 }, counts)
      local set = metrics.engine_set(metrics.new())
      metrics.feed_budget_hits(set, "repo-0", counts)
      metrics.feed_budget_hits(set, "repo-0", { time = 1 })
      local r = prom.parse(set.reg:render())
      assert.are.equal(3, prom.value(r, "ocean_mapping_budget_hits_total", { kind = "repo-0", budget = "time" }))
      assert.are.equal(1, prom.value(r, "ocean_mapping_budget_hits_total", { kind = "repo-0", budget = "memory" }))
    end)
  end)
end)

describe("the Prometheus text parser (spec helper)", function()
  local bad = {
    { "g 1", "line 1: no final newline" },
    { "1g 1\n", "line 1: expected a metric name" },
    { "g{a=\"x} 1\n", "line 1: label a: unterminated value" },
    { "g{a=x} 1\n", "line 1: label a: value must be quoted" },
    { "g{a=\"\\t\"} 1\n", "line 1: invalid escape \\t" },
    { "g{a=\"1\",a=\"2\"} 1\n", "line 1: label a twice" },
    { "g{a=\"1\" b=\"2\"} 1\n", "line 1: expected ',' or '}' after label a" },
    { "g one\n", "line 1: invalid value \"one\"" },
    { "g 1 2 3\n", "line 1: expected a value and an optional timestamp" },
    { "g 1 1.5\n", "line 1: invalid timestamp \"1.5\"" },
    { "g{} 1\ng 2\n", "line 2: sample g with these labels twice" },
    { "# TYPE g gauge\n# TYPE g gauge\n", "line 2: second TYPE for g" },
    { "# HELP g a\n# HELP g b\n", "line 2: second HELP for g" },
    { "# TYPE g meter\n", "line 1: unknown type \"meter\" for g" },
    { "g 1\n# TYPE g gauge\n", "line 2: TYPE g after its samples" },
    { "a 1\nb 1\na{x=\"1\"} 2\n", "line 3: family a appears again after another family" },
    { "g 1\n# HELP g x\n", "line 2: HELP g after its samples" },
    { "# TYPE h histogram\nh_sum 1\nh 2\n", "line 3: sample h in family h" },
    { "# HELP g bad \\q escape\n", "line 1: invalid escape \\q" },
  }
  for _, case in ipairs(bad) do
    it(("rejects %q: %s"):format(case[1], case[2]), function()
      assert.has_error(function() prom.parse(case[1]) end, case[2])
    end)
  end

  it("reads a well-formed text, split across families, with comments and a histogram", function()
    local r = prom.parse(table.concat({
      "# a comment",
      "# HELP h latency",
      "# TYPE h histogram",
      'h_bucket{le="0.1"} 1',
      'h_bucket{le="+Inf"} 3',
      "h_sum 0.7",
      "h_count 3",
      "",
      "# TYPE g gauge",
      'g{a="1",b="x y"} -2.5e3 1700000000000',
      'g{a="2",} NaN',
      "" }, "\n"))
    assert.are.same({ "h", "g" }, r.order)
    assert.are.equal(4, #r.families.h.samples)
    assert.are.equal(-2500, prom.value(r, "g", { a = "1", b = "x y" }))
    assert.are.equal(1700000000000, r.families.g.samples[1].timestamp)
  end)
end)
