-- ocean.http (third-party HTTP on the engine's loop) against the fake API
-- of examples/fake-api: requests, retries, timeouts, pagination.
local core = require "ocean.core"
local json = require "ocean.json"
local http = require "ocean.http"
local ehelp = require "spec.helpers.emulator"
local fake = require "spec.helpers.fake_api"
local sail = require "spec.helpers.sail"

local now = core.monotonic_ms

describe("ocean.http", function()
  local api

  setup(function() api = fake.start() end)
  teardown(function()
    fake.stop_all()
    ehelp.stop_all()                 -- its curl scratch directory
  end)
  before_each(function()
    api.faults()
    api.clear_requests()
  end)

  local function requests(path)
    local out = {}
    for _, r in ipairs(api.requests()) do
      if r.path == path then out[#out + 1] = r end
    end
    return out
  end

  it("decodes a JSON body with get_json", function()
    local teams = assert(http.get_json(api.url .. "/teams"))
    assert.are.equal(5, #teams)
    assert.are.same({ id = "platform", name = "Platform",
                      description = "Shared infrastructure and tooling" }, teams[1])
  end)

  it("makes get_json's non-2xx answers errors that name the request", function()
    local v, err = http.get_json(api.url .. "/teams/nope")
    assert.is_nil(v)
    assert.are.equal("GET " .. api.url .. '/teams/nope: HTTP 404 {"message":"team not found"}', err)
  end)

  it("sends the method, query, headers and a JSON body", function()
    local res = assert(http.request { method = "PUT", url = api.url .. "/echo",
      query = { b = "x y", a = { "1", "2" } }, headers = { ["X-Token"] = "t0k" },
      json = { k = 1 } })
    assert.are.same({ 200, true, 1 }, { res.status, res.ok, res.attempts })
    assert.are.equal(api.url .. "/echo?a=1&a=2&b=x%20y", res.url)
    local echo = assert(res:json())
    assert.are.same({ "PUT", { a = { "1", "2" }, b = "x y" }, "t0k", "application/json", '{"k":1}' },
      { echo.method, echo.query, echo.headers["x-token"], echo.headers["content-type"], echo.body })
  end)

  it("retries 429 answers, waiting as long as Retry-After says", function()
    api.faults { { path = "^/teams$", status = 429, retry_after = "1", count = 2 } }
    local res = assert(http.get(api.url .. "/teams"))
    assert.are.same({ 200, 3 }, { res.status, res.attempts })
    local reqs = requests("/teams")
    assert.are.equal(3, #reqs)
    for i = 2, 3 do
      local gap = reqs[i].at_ms - reqs[i - 1].at_ms
      assert.is_true(gap >= 950, ("attempt %d came %.0f ms after the previous one"):format(i, gap))
    end
  end)

  it("retries 503 by default, and not at all with retry = false", function()
    api.faults { { path = "^/teams$", status = 503, count = 1 } }
    local res = assert(http.get(api.url .. "/teams"))
    assert.are.same({ 200, 2 }, { res.status, res.attempts })
    api.faults { { path = "^/teams$", status = 503, count = 1 } }
    res = assert(http.get(api.url .. "/teams", { retry = false }))
    assert.are.same({ 503, false, 1 }, { res.status, res.ok, res.attempts })
    -- retry = 0: no retries either; retry = n: n retries at most
    api.faults { { path = "^/teams$", status = 503, count = 1 } }
    res = assert(http.get(api.url .. "/teams", { retry = 0 }))
    assert.are.same({ 503, 1 }, { res.status, res.attempts })
    api.faults { { path = "^/teams$", status = 503, count = 3 } }
    res = assert(http.get(api.url .. "/teams", { retry = 1 }))
    assert.are.same({ 503, 2 }, { res.status, res.attempts })
    api.faults()
  end)

  it("gives up at once when Retry-After is beyond the cap on waiting", function()
    api.faults { { path = "^/teams$", status = 429, retry_after = "5", count = 1 } }
    local t0 = now()
    local res = assert(http.get(api.url .. "/teams", { retry = { max_total_wait_ms = 500 } }))
    assert.are.same({ 429, 1 }, { res.status, res.attempts })
    assert.is_true(now() - t0 < 4000)             -- it did not wait the 5 s
  end)

  it("times out", function()
    local t0 = now()
    local res, err = http.get(api.url .. "/slow?ms=10000", { timeout = 0.3, retry = false })
    assert.is_nil(res)
    assert.matches("^GET " .. api.url:gsub("%p", "%%%0") .. "/slow%?ms=10000 failed: .*timed out", err)
    assert.is_true(now() - t0 < 5000)
  end)

  it("returns an error when the server cannot be reached", function()
    local url = "http://127.0.0.1:" .. sail.free_port() .. "/x"
    local res, err = http.get(url, { retry = false })
    assert.is_nil(res)
    assert.are.equal("GET " .. url .. " failed: ", err:sub(1, #url + 13))
  end)

  it("raises on misuse", function()
    assert.has_error(function() http.request { url = "ftp://x" } end,
      "http.request: url must be an http(s) URL, got ftp://x")
    assert.has_error(function() http.get(api.url, { timeout = -1 }) end,
      "http.get: opts.timeout must be a positive number of seconds")
    -- the function called and the option, never "bad self"
    assert.has_error(function() http.get_json(api.url, { retry = "often" }) end,
      "http.get_json: opts.retry must be false, a number of retries or a table of retry "
        .. "options, got a string")
    assert.has_error(function() http.get_json(api.url, { retry = 1.5 }) end,
      "http.get_json: opts.retry must be a whole number of retries from 0 to 100, got 1.5")
    assert.has_error(function() http.get_json(api.url, "fast") end,
      "http.get_json: options must be a table, got a string")
    assert.has_error(function() http.paginate(api.url, { next = "x" }) end,
      "http.paginate: opts.next must be a function")
  end)

  describe("paginate", function()
    local function collect(url, opts)
      local pages = {}
      for page in http.paginate(url, opts) do pages[#pages + 1] = page end
      return pages
    end

    local function sizes(pages)
      local out = {}
      for i, p in ipairs(pages) do out[i] = #p end
      return out
    end

    it("follows the Link header's rel=\"next\"", function()
      local pages = collect(api.url .. "/users")
      assert.are.same({ 10, 10, 10, 10, 10 }, sizes(pages))
      local seen = {}
      for _, p in ipairs(pages) do
        for _, u in ipairs(p) do seen[#seen + 1] = u.login end
      end
      assert.are.same({ "ada.smith", "alan.smith" }, { seen[1], seen[2] })
      assert.are.equal("john.novak", seen[50])
      local queries = {}
      for _, r in ipairs(requests("/users")) do queries[#queries + 1] = r.query end
      assert.are.same({ "", "page=2&per_page=10", "page=3&per_page=10", "page=4&per_page=10",
                        "page=5&per_page=10" }, queries)
    end)

    it("sends opts.query with the first page only", function()
      assert.are.same({ 7, 7, 7, 7, 7, 7, 7, 1 },
        sizes(collect(api.url .. "/users", { query = { per_page = 7 } })))
      assert.are.equal("per_page=7", requests("/users")[1].query)
    end)

    it("resolves relative Link URLs", function()
      assert.are.same({ 10, 10, 10, 10, 10 }, sizes(collect(api.url .. "/users?relative=true")))
    end)

    it("takes the next page from opts.next and the items from opts.items", function()
      local pages = collect(api.url .. "/user-cursor", {
        query = { limit = 20 },
        items = function(body) return body.items end,
        next = function(body, res, url)
          assert.are.equal(200, res.status)
          assert.is_string(url)
          if body.next_cursor ~= json.null then
            return { query = { cursor = body.next_cursor, limit = 20 } }
          end
        end,
      })
      assert.are.same({ 20, 20, 10 }, sizes(pages))
      assert.are.equal("frances.novak", pages[3][9].login)
    end)

    it("accepts a URL (relative too) from opts.next", function()
      local pages = collect(api.url .. "/user-cursor?limit=25", {
        items = function(body) return body.items end,
        next = function(body)
          if body.next_cursor ~= json.null then
            return "/user-cursor?limit=25&cursor=" .. body.next_cursor
          end
        end,
      })
      assert.are.same({ 25, 25 }, sizes(pages))
    end)

    it("raises an HTTP failure inside the loop, after the pages before it", function()
      api.faults { { path = "^/users$", query = "page=3", status = 500 } }
      local pages = {}
      local ok, err = pcall(function()
        for page in http.paginate(api.url .. "/users") do pages[#pages + 1] = page end
      end)
      assert.is_false(ok)
      assert.are.equal(2, #pages)
      assert.truthy(err:find("GET " .. api.url .. '/users?page=3&per_page=10: HTTP 500 '
        .. '{"message":"injected fault"}', 1, true), err)
    end)

    it("raises on a page that is not JSON", function()
      local ok, err = pcall(collect, api.url .. "/text")
      assert.is_false(ok)
      assert.truthy(err:find("GET " .. api.url .. "/text: response is not JSON", 1, true), err)
    end)

    it("raises when the next page is the page itself", function()
      local ok, err = pcall(collect, api.url .. "/teams", { next = function(_, _, url) return url end })
      assert.is_false(ok)
      assert.truthy(err:find("page 2 asks for a page already read (the pagination loops", 1, true),
        err)
    end)

    it("raises when a cursor comes back after other pages (A -> B -> A)", function()
      local n = 0
      local ok, err = pcall(collect, api.url .. "/teams", { next = function()
        n = n + 1
        return { query = { cursor = n % 2 == 1 and "b" or "a" } }
      end })
      assert.is_false(ok)
      -- pages: first (no cursor), b, a, b again -> the 4th is refused
      assert.are.equal(3, n)
      assert.truthy(err:find("page 4 asks for a page already read", 1, true), err)
    end)

    it("follows cursors that keep changing", function()
      local n = 0
      local pages = collect(api.url .. "/teams", { next = function()
        n = n + 1
        if n < 4 then return { query = { from = "c" .. n, limit = 2 } } end
      end })
      assert.are.equal(4, #pages)
    end)
  end)
end)

describe("ocean.http.link_next", function()
  local cases = {
    { '<https://a.io/x?page=2>; rel="next", <https://a.io/x?page=9>; rel="last"', "https://a.io/x?page=2" },
    { '<https://a.io/x?page=9>; rel="last", <https://a.io/x?page=2>; rel=next', "https://a.io/x?page=2" },
    { '<https://a.io/x?f=a,b&page=2>; rel="next"', "https://a.io/x?f=a,b&page=2" },
    { '<https://a.io/x?page=2>; title="n"; rel="next last"', "https://a.io/x?page=2" },
    { '<https://a.io/x?page=2>; REL="Next"', "https://a.io/x?page=2" },
    { '</x?page=2>; rel="next"', "/x?page=2" },
    { '<https://a.io/x?page=1>; rel="prev"', nil },
    { '<https://a.io/x?page=1>; rel="nextish"', nil },
    { "", nil },
    { nil, nil },
  }
  for _, c in ipairs(cases) do
    it(("finds %s in %s"):format(tostring(c[2]), tostring(c[1])), function()
      assert.are.equal(c[2], http.link_next(c[1]))
    end)
  end
end)

describe("ocean.http.resolve_url", function()
  local base = "http://h.io:8080/api/users?page=1"
  local cases = {
    { "https://o.io/x", "https://o.io/x" },
    { "//o.io/x", "http://o.io/x" },
    { "/x?p=2", "http://h.io:8080/x?p=2" },
    { "?page=2", "http://h.io:8080/api/users?page=2" },
    { "teams?p=2", "http://h.io:8080/api/teams?p=2" },
  }
  for _, c in ipairs(cases) do
    it(("resolves %s"):format(c[1]), function()
      assert.are.equal(c[2], http.resolve_url(base, c[1]))
    end)
  end
  it("resolves against a URL without a path", function()
    assert.are.equal("http://h.io/?a=1", http.resolve_url("http://h.io", "?a=1"))
    assert.are.equal("http://h.io/x", http.resolve_url("http://h.io", "x"))
  end)
end)
