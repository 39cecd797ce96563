-- ocean.cache: memoize and memoize_pages, the resync scope, and the disk
-- store with a TTL (atomic files, corrupt and expired entries).
local cache = require "ocean.cache"
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"

local q = ehelp.shell_quote

local function silent_log()
  local lines = {}
  local function add(level) return function(fmt, ...) lines[#lines + 1] = level .. " " .. fmt:format(...) end end
  return { debug = add("DEBUG"), info = add("INFO"), warning = add("WARNING"), error = add("ERROR"),
           lines = lines }
end

local function counter_fn()
  local calls = {}
  return calls, function(a, b)
    calls[#calls + 1] = { a, b }
    return { sum = (a or 0) + (b or 0) }
  end
end

local function pages_gen(calls)
  return function(prefix, n)
    calls[#calls + 1] = prefix
    for i = 1, n do coroutine.yield({ { id = prefix .. i } }) end
  end
end

local function collect(it)
  local out = {}
  for page in it do out[#out + 1] = page[1].id end
  return out
end

describe("ocean.cache", function()
  local dir, log, now
  before_each(function()
    dir = ehelp.tmpdir() .. "/cache"
    log = silent_log()
    now = 1000
  end)
  after_each(function() os.execute("rm -rf " .. q(dir:match("^(.*)/cache$"))) end)

  local function new(opts)
    opts = opts or {}
    opts.log = log
    opts.clock = function() return now end
    return assert(cache.new(opts))
  end

  describe("memoize (Ocean's cache_coroutine_result)", function()
    it("computes once per arguments within a resync", function()
      local c = new()
      local calls, fn = counter_fn()
      local m = c:memoize(fn, { name = "sum" })
      c:begin_resync("r1")
      assert.are.same({ sum = 3 }, m(1, 2))
      assert.are.same({ sum = 3 }, m(1, 2))
      assert.are.same({ sum = 5 }, m(2, 3))
      assert.are.same({ sum = 1 }, m(1, nil))
      assert.are.same({ sum = 1 }, m(1))      -- (1, nil) and (1) are two calls
      assert.are.equal(4, #calls)
      assert.are.same({ hits = 1, misses = 4, disk_hits = 0, disk_writes = 0, errors = 0 }, c.stats)
    end)

    it("keeps nothing outside a resync, and forgets at its end", function()
      local c = new()
      local calls, fn = counter_fn()
      local m = c:memoize(fn)
      m(1, 1)
      m(1, 1)
      assert.are.equal(2, #calls)
      c:begin_resync("r1")
      m(1, 1)
      m(1, 1)
      assert.are.equal(3, #calls)
      c:end_resync("r1")
      m(1, 1)
      assert.are.equal(4, #calls)
    end)

    it("starts fresh at each begin_resync and ignores a late end_resync", function()
      local c = new()
      local calls, fn = counter_fn()
      local m = c:memoize(fn)
      c:begin_resync("r1")
      m(1, 1)
      c:begin_resync("r2")            -- r1 never ended (it failed)
      m(1, 1)
      assert.are.equal(2, #calls)
      c:end_resync("r1")              -- late: r2 keeps its cache
      m(1, 1)
      assert.are.equal(2, #calls)
      assert.is_true(c:in_resync())
    end)

    it("never keeps a nil result or an error", function()
      local c = new()
      local n = 0
      local m = c:memoize(function(fail)
        n = n + 1
        if fail == "raise" then error("boom") end
        if fail then return nil, "401 Unauthorized" end
        return "ok"
      end)
      c:begin_resync()
      assert.are.same({ nil, "401 Unauthorized" }, { m(true) })
      assert.are.same({ nil, "401 Unauthorized" }, { m(true) })
      assert.has_error(function() m("raise") end)
      assert.has_error(function() m("raise") end)
      assert.are.equal(4, n)
    end)

    it("calls through when an argument is not JSON", function()
      local c = new()
      local n = 0
      local m = c:memoize(function() n = n + 1 return n end)
      c:begin_resync()
      local f = function() end
      assert.are.equal(1, m(f))
      assert.are.equal(2, m(f))
    end)

    it("tells tables apart by content, not identity, and keys by name", function()
      local c = new()
      local n = 0
      local fn = function() n = n + 1 return n end
      local a, b = c:memoize(fn, { name = "a" }), c:memoize(fn, { name = "b" })
      c:begin_resync()
      assert.are.equal(1, a({ x = 1, y = { 2 } }))
      assert.are.equal(1, a({ y = { 2 }, x = 1 }))
      assert.are.equal(2, b({ x = 1, y = { 2 } }))
    end)
  end)

  describe("memoize_pages (Ocean's cache_iterator_result)", function()
    it("replays a generator's pages for the second caller", function()
      local c = new()
      local calls = {}
      local pages = c:memoize_pages(pages_gen(calls), { name = "users" })
      c:begin_resync()
      assert.are.same({ "u1", "u2", "u3" }, collect(pages("u", 3)))
      assert.are.same({ "u1", "u2", "u3" }, collect(pages("u", 3)))
      assert.are.same({ "v1" }, collect(pages("v", 1)))
      assert.are.same({ "u", "v" }, calls)
    end)

    it("takes a function returning the whole list as one page", function()
      local c = new()
      local n = 0
      local pages = c:memoize_pages(function() n = n + 1 return { { id = "only" } } end)
      c:begin_resync()
      assert.are.same({ "only" }, collect(pages()))
      assert.are.same({ "only" }, collect(pages()))
      assert.are.equal(1, n)
    end)

    it("keeps nothing when the generator fails or the consumer stops early", function()
      local c = new()
      local calls = {}
      local fail = true
      local pages = c:memoize_pages(function(n)
        calls[#calls + 1] = n
        coroutine.yield({ { id = "p1" } })
        if fail then error("page 2: 503") end
        coroutine.yield({ { id = "p2" } })
      end)
      c:begin_resync()
      local ok, err = pcall(collect, pages(2))
      assert.is_false(ok)
      assert.truthy(err:find("page 2: 503", 1, true), err)
      fail = false
      local first = pages(2)
      assert.are.equal("p1", first()[1].id)         -- the consumer stops after page 1
      assert.are.same({ "p1", "p2" }, collect(pages(2)))
      assert.are.same({ "p1", "p2" }, collect(pages(2)))
      assert.are.same({ 2, 2, 2 }, calls)
    end)

    it("runs inside a resync function's coroutine, its pages yielded on", function()
      local c = new()
      local calls = {}
      local pages = c:memoize_pages(pages_gen(calls))
      c:begin_resync()
      local resync = coroutine.wrap(function()
        for page in pages("w", 2) do coroutine.yield(page) end
        for page in pages("w", 2) do coroutine.yield(page) end
      end)
      local got = {}
      for page in resync do got[#got + 1] = page[1].id end
      assert.are.same({ "w1", "w2", "w1", "w2" }, got)
      assert.are.same({ "w" }, calls)
    end)
  end)

  describe("on disk, with a ttl", function()
    it("keeps a result across resyncs and cache objects until the ttl passes", function()
      local calls = {}
      local c1 = new { dir = dir }
      local p1 = c1:memoize_pages(pages_gen(calls), { name = "repos", ttl = 60 })
      assert.are.same({ "r1", "r2" }, collect(p1("r", 2)))      -- outside a resync: disk only
      assert.are.equal(1, c1.stats.disk_writes)
      local c2 = new { dir = dir }                               -- another process, same dir
      local p2 = c2:memoize_pages(pages_gen(calls), { name = "repos", ttl = 60 })
      c2:begin_resync()
      assert.are.same({ "r1", "r2" }, collect(p2("r", 2)))
      assert.are.equal(1, #calls)
      assert.are.equal(1, c2.stats.disk_hits)
      now = now + 61
      c2:begin_resync()
      assert.are.same({ "r1", "r2" }, collect(p2("r", 2)))
      assert.are.equal(2, #calls)
    end)

    it("keeps JSON's null and empty arrays", function()
      local c = new { dir = dir }
      local m = c:memoize(function() return { a = json.null, list = json.array {} } end,
        { name = "shape", ttl = 10 })
      m()
      local c2 = new { dir = dir }
      local v = c2:memoize(function() error("not called") end, { name = "shape", ttl = 10 })()
      assert.are.equal(json.null, v.a)
      assert.are.equal("[]", json.encode(v.list))
    end)

    it("writes whole files: a temporary file renamed, none left behind", function()
      local c = new { dir = dir }
      c:memoize(function(x) return { x = x } end, { name = "w", ttl = 10 })(1)
      local files = ehelp.sh("ls -1 " .. q(dir))
      assert.matches("^w%-%x+%.json\n$", files)
      local entry = json.decode(ehelp.read_file(dir .. "/" .. files:gsub("\n", "")))
      assert.are.same({ key = 'w([1])', expires_at = 1010, value = { x = 1 } }, entry)
    end)

    it("treats a corrupt file as a miss, removes it and warns", function()
      local c = new { dir = dir }
      local n = 0
      local m = c:memoize(function() n = n + 1 return "v" end, { name = "corrupt", ttl = 10 })
      m()
      local file = dir .. "/" .. ehelp.sh("ls -1 " .. q(dir)):gsub("\n", "")
      local f = assert(io.open(file, "w"))
      f:write('{"key": "corrupt([])", "expi')
      f:close()
      local c2 = new { dir = dir }
      local m2 = c2:memoize(function() n = n + 1 return "v" end, { name = "corrupt", ttl = 10 })
      assert.are.equal("v", m2())
      assert.are.equal(2, n)
      assert.are.same({ "WARNING cache: " .. file .. " is not a cache entry: removed" }, log.lines)
    end)

    it("warns and still answers when a value is not JSON", function()
      local c = new { dir = dir }
      local v = c:memoize(function() return { f = print } end, { name = "fn", ttl = 10 })()
      assert.are.equal(print, v.f)
      assert.are.equal(1, c.stats.errors)
      assert.truthy(log.lines[1]:find("^WARNING cache: fn not kept on disk: not JSON"), log.lines[1])
    end)

    it("clears its entries", function()
      local c = new { dir = dir }
      c:memoize(function() return 1 end, { name = "a", ttl = 10 })()
      c:memoize(function() return 2 end, { name = "b", ttl = 10 })()
      os.execute("touch " .. q(dir .. "/unrelated.txt"))
      assert.is_true(c:clear())
      assert.are.equal("unrelated.txt\n", ehelp.sh("ls -1 " .. q(dir)))
    end)

    it("refuses a ttl without a folder, and bad options", function()
      local c = new()
      assert.has_error(function() c:memoize(print, { ttl = 5 }) end,
        "cache.memoize: ttl needs cache.new{dir = ...}")
      assert.has_error(function() new { dir = dir }:memoize_pages(print, { ttl = 0 }) end,
        "cache.memoize_pages: ttl must be a positive number of seconds")
      assert.has_error(function() c:memoize("f") end, "cache.memoize: expected a function")
      assert.has_error(function() c:memoize(print, { name = "" }) end,
        "cache.memoize: name must be a non-empty string")
    end)
  end)
end)
