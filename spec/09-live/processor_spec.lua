-- Webhook processors (ocean.webhook) over the durable queue
-- (ocean.event_queue), in one process against the emulator: the answer
-- before and after the journal, 401 and 400, matching processors, kinds
-- and resources, Ocean's handle_event retries, the journal's retries,
-- backoff and dead letters. `ocean sail` and nginx, with SIGKILL:
-- spec/07-runner/live_events_spec.lua, spec/08-openresty/live_spec.lua.
local journal = require "ocean.journal"
local json = require "ocean.json"
local log = require "ocean.log"
local router = require "ocean.router"
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"

local MAPPING = { resources = json.array {
  { kind = "issue", selector = { query = "true" },
    port = { entity = { mappings = { identifier = ".id", blueprint = '"issue"',
      properties = { state = ".state" } } } } },
  { kind = "issue", selector = { query = '.state == "open"' },
    port = { entity = { mappings = { identifier = '"open-" + .id', blueprint = '"openIssue"',
      properties = {} } } } },
  { kind = "comment", selector = { query = "true" },
    port = { entity = { mappings = { identifier = ".id", blueprint = '"comment"',
      properties = { text = ".text" } } } } },
} }

local BLUEPRINTS = {
  { identifier = "issue", title = "Issue", schema = { properties = { state = { type = "string" } } } },
  { identifier = "openIssue", title = "Open issue", schema = { properties = {} } },
  { identifier = "comment", title = "Comment", schema = { properties = { text = { type = "string" } } } },
  { identifier = "note", title = "Note", schema = { properties = { n = { type = "string" } } } },
}

-- a kind whose mapping rejects some items: identifier and blueprint from
-- the item, a selector whose jq raises for the id "boom"
local NOTES = { resources = json.array {
  { kind = "note", selector = { query = 'if .id == "boom" then error("the id is boom") else true end' },
    port = { entity = { mappings = { identifier = ".id", blueprint = ".bp",
      properties = { n = ".n" } } } } },
} }

local TOKEN = { ["x-token"] = "s3cret" }

describe("webhook processors", function()
  local emu, dir, ctx, ocean, lines

  setup(function()
    emu = ehelp.start { quiet = true }
    dir = ehelp.tmpdir()
  end)
  teardown(function()
    log.set_sink(nil)
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  local n = 0
  local function start(env, mapping)
    emu.reset()
    ctx, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = mapping or MAPPING, env = env,
                                 log_level = "DEBUG" })
    lines = {}
    log.set_sink(function(level, msg) lines[#lines + 1] = level .. " " .. msg end)
    n = n + 1
    local q = assert(ctx:open_live_events { path = ("%s/j%d/it.sqlite3"):format(dir, n) })
    return q
  end
  after_each(function()
    log.set_sink(nil)
    ocean.engine():close()
  end)

  local function logged(text)
    for _, l in ipairs(lines) do if l:find(text, 1, true) then return l end end
    return nil
  end

  -- a processor for issues, with spies
  local function issues(extra)
    local p = {
      name = "issues", seen = {},
      should_process_event = function(ev) return ev.headers["x-kind"] == "issue" end,
      get_matching_kinds = function() return { "issue" } end,
      authenticate = function(_, h) return h["x-token"] == "s3cret" end,
      validate_payload = function(payload) return type(payload.issue) == "table" end,
    }
    p.handle_event = function(payload, resource)
      p.seen[#p.seen + 1] = resource.port.entity.mappings.blueprint
      if payload.action == "deleted" then return { updated = {}, deleted = { payload.issue } } end
      return { updated = { payload.issue }, deleted = {} }
    end
    for k, v in pairs(extra or {}) do p[k] = v end
    return p
  end

  local function post(body, headers, path)
    local h = { ["x-kind"] = "issue" }
    for k, v in pairs(headers or TOKEN) do h[k] = v end
    local res = ctx.router:handle(router.request { method = "POST", path = path or "/webhook",
      headers = h, body = type(body) == "string" and body or json.encode(body) })
    return res.status, json.decode(res.body)
  end

  local function applied(q, count)
    assert(ctx:await(function() return q:stats().applied + q:stats().dead_lettered >= count end,
      15000), "events not applied: " .. json.encode(q:stats()))
  end

  local function ids(bp)
    local out = {}
    for _, e in ipairs(emu.entities(bp)) do out[#out + 1] = e.identifier end
    table.sort(out)
    return out
  end

  it("answers {\"status\":\"ok\"} once the event is on disk, and applies it in the background", function()
    local q = start()
    ocean.add_webhook_processor("/webhook", issues())
    local status, body = post { issue = { id = "i1", state = "open" } }
    assert.are.same({ 200, { status = "ok" } }, { status, body })
    -- journaled before the answer; nothing applied yet (the consumer is not started)
    local pending = assert(q.j:pending())
    assert.are.equal(1, #pending)
    assert.are.same({ "/webhook", "issue", '{"issue":{"id":"i1","state":"open"}}' },
      { pending[1].path, pending[1].headers["x-kind"], pending[1].body })
    assert.are.same({}, emu.entities("issue"))
    q:start()
    applied(q, 1)
    assert.are.same({ "i1" }, ids("issue"))
    assert.are.same({ "open-i1" }, ids("openIssue"))
    assert.are.same({ pending = 0, dead = 0, received = 1, applied = 1, failed = 0 },
      { pending = q:stats().pending, dead = q:stats().dead, received = q:stats().received,
        applied = q:stats().applied, failed = q:stats().failed })
    assert.truthy(logged("event 1 (POST /webhook) journaled for 1 processor(s)"))
    assert.truthy(logged("event 1 (POST /webhook), attempt 1: processor 'issues' kind 'issue' "
      .. "(resource 1), processor 'issues' kind 'issue' (resource 2)"))
    assert.truthy(logged("event 1 (POST /webhook) applied in"))
  end)

  it("runs handle_event once per resource of each matching kind, with that resource's config", function()
    local q = start()
    local p = issues()
    local comments = {
      name = "comments", seen = 0,
      should_process_event = function(ev) return ev.payload.comment ~= nil end,
      get_matching_kinds = function() return { "comment", "nope" } end,
      authenticate = function() return true end,
      validate_payload = function() return true end,
      handle_event = function(payload, resource)
        assert.are.equal("comment", resource.kind)
        return { updated = { payload.comment } }
      end,
    }
    ocean.add_webhook_processor("/webhook", p)
    ocean.add_webhook_processor("/webhook", comments)
    q:start()
    -- an issue and a comment in one event: both processors; a closed
    -- issue: the second resource's selector drops it
    assert.are.equal(200, (post { issue = { id = "i2", state = "closed" },
                                  comment = { id = "c1", text = "hi" } }))
    applied(q, 1)
    table.sort(p.seen)
    assert.are.same({ '"issue"', '"openIssue"' }, p.seen)
    assert.are.same({ "i2" }, ids("issue"))
    assert.are.same({}, ids("openIssue"))
    assert.are.same({ "c1" }, ids("comment"))
    -- only the comments processor wants this one (no x-kind: issue)
    assert.are.equal(200, (post({ comment = { id = "c2", text = "yo" } }, { ["x-kind"] = "other" })))
    applied(q, 2)
    assert.are.same({ "c1", "c2" }, ids("comment"))
  end)

  it("reads the mapping from Port once for a burst of concurrent events", function()
    local q = start()
    ocean.add_webhook_processor("/webhook", issues())
    q:start()
    emu.clear_requests()
    local tasks = {}
    for i = 1, 30 do
      tasks[i] = ctx:spawn(function() return post { issue = { id = "b" .. i, state = "closed" } } end)
    end
    applied(q, 30)
    for _, t in ipairs(tasks) do assert.are.same({ true, 200, { status = "ok" } }, { t:result() }) end
    local gets = 0
    for _, r in ipairs(emu.requests()) do
      if r.method == "GET" and r.path:match("^/v1/integration/") then gets = gets + 1 end
    end
    assert.are.equal(1, gets)
    assert.are.equal(30, #ids("issue"))
  end)

  it("answers 401 when a processor that wants the event does not authenticate it", function()
    local q = start()
    ocean.add_webhook_processor("/webhook", issues())
    q:start()
    emu.clear_requests()
    local status, body = post({ issue = { id = "i3", state = "open" } }, { ["x-token"] = "forged" })
    assert.are.same({ 401, { status = "error", message = "authentication failed" } }, { status, body })
    status = post({ issue = { id = "i3", state = "open" } }, {})
    assert.are.equal(401, status)
    assert.are.same({ 0, 0 }, { #assert(q.j:pending()), q:stats().received })
    assert.are.same({}, emu.requests())
    assert.truthy(logged("webhook POST /webhook refused: processor 'issues' did not authenticate it (401)"))
  end)

  it("lets authenticate verify GitHub's X-Hub-Signature-256 over the bytes received (event.raw_body)", function()
    local q = start()
    local SECRET = "It's a Secret to Everybody"
    local raws, auth_events = {}, {}
    ocean.add_webhook_processor("/webhook", issues {
      should_process_event = function(ev)
        raws[#raws + 1] = ev.raw_body
        return ev.headers["x-kind"] == "issue"
      end,
      authenticate = function(_, headers, event)
        auth_events[#auth_events + 1] = event
        local want = "sha256=" .. ocean.hmac("sha256", SECRET, event.raw_body)
        return ocean.secure_compare(headers["x-hub-signature-256"], want)
      end,
    })
    local function signed(text, secret)
      return { ["x-hub-signature-256"] = "sha256=" .. ocean.hmac("sha256", secret or SECRET, text) }
    end
    -- the sender's own bytes: spacing, key order, an escaped slash
    local body = '{ "action": "opened",\n  "issue": { "state": "open", "id": "s1", "url": "a\\/b" } }'
    assert.are.same({ 200, { status = "ok" } }, { post(body, signed(body)) })
    assert.are.equal(body, auth_events[1].raw_body)
    assert.are.equal("s1", auth_events[1].payload.issue.id)
    -- the same JSON serialised again (other bytes) with the signature of the
    -- original: refused, so the check reads the raw bytes, not a re-encoding
    local again = json.encode(json.decode(body))
    assert.are_not.equal(body, again)
    assert.are.same(json.decode(body), json.decode(again))
    local status, answer = post(again, signed(body))
    assert.are.same({ 401, { status = "error", message = "authentication failed" } }, { status, answer })
    -- another secret, a signature of one byte more, none at all
    assert.are.equal(401, (post(body, signed(body, "not the secret"))))
    assert.are.equal(401, (post(body, signed(body .. " "))))
    assert.are.equal(401, (post(body, {})))
    assert.are.equal(1, #assert(q.j:pending()))
    assert.are.equal(body, q.j:pending()[1].body)
    -- in the background (authenticate is not asked again) the processor's
    -- functions see the same bytes, read back from the journal
    local before = #raws
    q:start()
    applied(q, 1)
    assert.are.same({ "s1" }, ids("issue"))
    assert.is_true(#raws > before)
    for i = before + 1, #raws do assert.are.equal(body, raws[i]) end
    assert.are.equal(5, #auth_events)
  end)

  it("answers 400 to a payload no processor accepts, to a body that is not JSON, and to none", function()
    local q = start()
    ocean.add_webhook_processor("/webhook", issues())
    local status, body = post { issue = "not an object" }
    assert.are.same({ 400, { status = "error", message = "invalid payload" } }, { status, body })
    status, body = post('{"issue": ')
    assert.are.same({ 400, "invalid_json" }, { status, body.error })
    status, body = post("")
    assert.are.same({ 400, { status = "error", message = "the webhook has no body" } }, { status, body })
    assert.are.equal(0, #assert(q.j:pending()))
    assert.truthy(logged("webhook POST /webhook refused: no processor accepts its payload (400)"))
  end)

  it("answers ok without journaling an event no processor wants", function()
    local q = start()
    ocean.add_webhook_processor("/webhook", issues())
    local status, body = post({ issue = { id = "x" } }, { ["x-kind"] = "push" })
    assert.are.same({ 200, { status = "ok" } }, { status, body })
    assert.are.equal(0, #assert(q.j:pending()))
    assert.truthy(logged("webhook POST /webhook: no processor wants this event; ignored"))
  end)

  it("deletes what handle_event says was deleted, and only what this integration owns", function()
    local q = start()
    ocean.add_webhook_processor("/webhook", issues())
    q:start()
    post { issue = { id = "i4", state = "open" } }
    applied(q, 1)
    assert.are.same({ "i4" }, ids("issue"))
    emu.seed { { blueprint = "issue", identifier = "theirs", properties = { state = "open" },
                 datasource = "someone-else" } }
    post { action = "deleted", issue = { id = "i4", state = "open" } }
    post { action = "deleted", issue = { id = "theirs", state = "closed" } }
    applied(q, 3)
    assert.are.same({ "theirs" }, ids("issue"))
    assert.are.same({}, ids("openIssue"))
    assert.truthy(logged("not deleting issue/theirs: this integration does not own it at Port"))
  end)

  it("retries handle_event as Ocean does: retryable errors, with backoff, up to max_retries", function()
    local q = start()
    local calls = 0
    ocean.add_webhook_processor("/webhook", issues {
      max_retries = 2, initial_retry_delay_seconds = 0.05,
      get_matching_kinds = function() return { "comment" } end,     -- one resource
      handle_event = function(payload)
        calls = calls + 1
        if calls <= 2 then error(ocean.retryable("the API answered 502")) end
        return { updated = { { id = payload.issue.id, text = "ok" } } }
      end,
    })
    q:start()
    post { issue = { id = "k1" } }
    applied(q, 1)
    assert.are.same({ 3, 1, 0 }, { calls, q:stats().applied, q:stats().failed })
    assert.are.same({ "k1" }, ids("comment"))
    assert.truthy(logged("processor 'issues' kind 'comment': attempt 1/3 failed, retrying in 0.10 s: "
      .. "the API answered 502"))
    assert.truthy(logged("attempt 2/3 failed, retrying in 0.20 s"))
  end)

  it("retries a failed event from the journal with backoff, counting attempts, until it applies", function()
    local q = start()
    local calls = 0
    ocean.add_webhook_processor("/webhook", issues {
      handle_event = function(payload)
        calls = calls + 1
        if calls == 1 then error("the API is down", 0) end   -- not retryable: the event fails
        return { updated = { payload.issue } }
      end,
      get_matching_kinds = function() return { "issue" } end,
    })
    q:start()
    post { issue = { id = "r1", state = "closed" } }   -- one resource keeps it
    applied(q, 1)
    assert.are.same({ "r1" }, ids("issue"))
    local st = q:stats()
    assert.are.same({ 1, 1, 1, 0 }, { st.applied, st.failed, st.retried, st.pending })
    assert.truthy(logged("event 1 (POST /webhook) failed (attempt 1 of 5), retrying in 1 s: "
      .. "webhook processor 'issues' (/webhook) kind 'issue': the API is down"))
    assert.truthy(logged("event 1 (POST /webhook) applied in"))
    assert.truthy(logged("(attempt 2)"))
  end)

  it("makes an event that keeps failing a dead letter after its last attempt", function()
    local q = start { OCEAN__LIVE_EVENTS__MAX_ATTEMPTS = "2" }
    ocean.add_webhook_processor("/webhook", issues {
      handle_event = function() error("always broken", 0) end,
    })
    q:start()
    post { issue = { id = "d1", state = "open" } }
    applied(q, 1)
    local dead = assert(q.j:dead())
    assert.are.equal(1, #dead)
    assert.are.same({ 2, "/webhook" }, { dead[1].attempts, dead[1].path })
    assert.matches("always broken", dead[1].last_error)
    assert.are.same({ 1, 0 }, { q:stats().dead_lettered, q:stats().pending })
    assert.truthy(logged("ERROR event 1 (POST /webhook) is a dead letter after 2 attempts: "))
    -- and how to send it again
    assert.truthy(logged("(`ocean journal --requeue 1` sends it again at the next start, after what "
      .. "came since)"))
  end)

  it("retries an event Port refused 404 (a related entity may come), and applies it next time", function()
    local q = start()
    ocean.add_webhook_processor("/webhook", issues { get_matching_kinds = function() return { "comment" } end,
      handle_event = function(p) return { updated = { { id = p.issue.id, text = "t" } } } end })
    -- twice: the batch's own retry of a 404, then the event's first attempt fails
    emu.faults { { method = "POST", path = "/blueprints/comment/entities/bulk$", status = 404,
                   count = 2, body = { ok = false, error = "not_found", message = "related entity missing" } } }
    q:start()
    post { issue = { id = "p1" } }
    applied(q, 1)
    assert.are.same({ "p1" }, ids("comment"))
    assert.are.same({ 1, 1, 0 }, { q:stats().failed, q:stats().applied, q:stats().dead_lettered })
    assert.truthy(logged("event 1 (POST /webhook) failed (attempt 1 of 5)"))
  end)

  it("applies the other events of a shared bulk Port refused as a whole (400) for one entity", function()
    local q = start()
    ocean.add_webhook_processor("/webhook", issues { get_matching_kinds = function() return { "comment" } end,
      handle_event = function(p) return { updated = { { id = p.issue.id, text = "t" } } } end })
    -- a request-level 400 whenever the bulk holds c3: the bulk is split
    -- down to c3 alone, which is a dead letter; c1, c2, c4 are applied
    emu.faults { { method = "POST", path = "/blueprints/comment/entities/bulk$", status = 400,
                   body_has = '"c3"', body = { ok = false, error = "bad_request", message = "c3 is bad" } } }
    for i = 1, 4 do post { issue = { id = "c" .. i } } end   -- journaled before the start:
    q:start()                                                -- applied in one shared bulk
    applied(q, 4)
    assert.are.same({ "c1", "c2", "c4" }, ids("comment"))
    local st = q:stats()
    assert.are.same({ 3, 1 }, { st.applied, st.dead_lettered })
    assert.truthy(logged("is a dead letter at attempt 1: retrying cannot fix it: webhook processor "
      .. "'issues' (/webhook) kind 'comment': 1 failed upserts, 0 failed deletions (comment/c3: 400"))
    emu.faults()
  end)

  it("keeps the last error of an event masked in the journal, as the log masks it", function()
    local q = start()
    -- a bad shape (a dead letter at once) whose message holds Port's secret
    ocean.add_webhook_processor("/webhook", issues { handle_event = function()
      return { [emu.client_secret] = {} }
    end })
    q:start()
    post { issue = { id = "m1" } }
    applied(q, 1)
    local dead = assert(q.j:dead())
    assert.are.equal(1, #dead)
    assert.is_nil(dead[1].last_error:find(emu.client_secret, 1, true), dead[1].last_error)
    assert.truthy(dead[1].last_error:find("****", 1, true), dead[1].last_error)
  end)

  -- what retrying cannot fix: a dead letter at its first attempt, kept in
  -- the journal for requeue, an ERROR, counted; nothing retried
  local function dead_at_once(q, why)
    applied(q, 1)
    local dead = assert(q.j:dead())
    assert.are.equal(1, #dead, "dead letters: " .. json.encode(q:stats()))
    assert.are.equal(1, dead[1].attempts)
    assert.are.equal(why, dead[1].last_error:sub(1, #why))
    local st = q:stats()
    assert.are.same({ 1, 1, 0, 0, 0 }, { st.dead_lettered, st.failed, st.retried, st.applied, st.pending })
    assert.truthy(logged("ERROR event 1 (POST /webhook) is a dead letter at attempt 1: retrying cannot "
      .. "fix it: " .. why))
    assert.is_nil(logged("retrying in"))
  end

  local function comments(handle)
    return issues { get_matching_kinds = function() return { "comment" } end, handle_event = handle }
  end

  for _, case in ipairs {
    { "a 422 for a numeric identifier", function() return { updated = { { id = 12, text = "t" } } } end,
      "webhook processor 'issues' (/webhook) kind 'comment': 1 failed upserts, 0 failed deletions "
      .. "(comment/12: 422 identifier must be a non-empty string or a search query)" },
    -- Port's 413 for one entity alone (the client halves a refused bulk
    -- down to single entities first): too large, whatever the retry
    { "a 413 for one entity too large", function() return { updated = { { id = "big", text = ("x"):rep(5000) } } } end,
      "webhook processor 'issues' (/webhook) kind 'comment': 1 failed upserts, 0 failed deletions "
      .. "(comment/big: 413", { { method = "POST", path = "/entities/bulk$", max_body_bytes = 2000 } } },
  } do
    it("makes an event Port refuses for the entity itself (" .. case[1] .. ") a dead letter at once", function()
      local q = start()
      ocean.add_webhook_processor("/webhook", comments(case[2]))
      if case[4] then emu.faults(case[4]) end
      q:start()
      post { issue = { id = "b1" } }
      dead_at_once(q, case[3])
      emu.faults()
    end)
  end

  local WHERE = "webhook processor 'issues' (/webhook) kind 'comment': "
  local LIST = "; it must be a list of raw objects, e.g. { updated = { obj } }"
  for _, case in ipairs {
    { "one object as updated", function(p) return { updated = p.issue } end,
      "handle_event's updated is a single object (it has the key \"id\"), not a list of raw objects" .. LIST },
    { "one object as deleted", function() return { deleted = { id = "x", text = "t" } } end,
      "handle_event's deleted is a single object (it has the key \"" },
    { "an unknown key", function(p) return { upserted = { p.issue } } end,
      "handle_event returned an unknown key \"upserted\": the allowed keys are updated and deleted "
      .. "(lists of raw objects)" },
    { "Ocean's key", function(p) return { updated_raw_results = { p.issue } } end,
      "handle_event returned an unknown key \"updated_raw_results\": the allowed keys are updated and "
      .. "deleted (lists of raw objects); Ocean's updated_raw_results is updated here" },
    { "a list as the result", function(p) return { p.issue } end,
      "handle_event returned an unknown key \"1\": the allowed keys are updated and deleted" },
    { "a string in the list", function() return { updated = { "c1" } } end,
      "handle_event's updated[1] is a string, not a raw object (a table)" .. LIST },
    { "a list in the list", function(p) return { updated = { { p.issue } } } end,
      "handle_event's updated[1] is a list, not a raw object (a list of lists?)" .. LIST },
    { "a sparse list", function(p) return { updated = { [1] = p.issue, [3] = p.issue } } end,
      "handle_event's updated is a sparse list (a hole at index 2), not a list of raw objects" .. LIST },
    { "a sparse list in the list", function(p) return { updated = { { [1] = p.issue, [3] = p.issue } } } end,
      "handle_event's updated[1] is a list, not a raw object (a list of lists?)" .. LIST },
    { "a number as the list", function() return { updated = 5 } end,
      "handle_event's updated is a number, not a list of raw objects" .. LIST },
    { "nothing", function() end,
      "handle_event must return {updated = {raw objects}, deleted = {raw objects}}, got nil" },
  } do
    it("makes a handle_event result of the wrong shape (" .. case[1] .. ") a dead letter at once", function()
      local q = start()
      ocean.add_webhook_processor("/webhook", comments(case[2]))
      q:start()
      post { issue = { id = "s1", text = "t" } }
      applied(q, 1)
      local dead = assert(q.j:dead())
      assert.are.equal(1, #dead, "dead letters: " .. json.encode(q:stats()))
      assert.are.equal(1, dead[1].attempts)
      assert.are.equal(WHERE, dead[1].last_error:sub(1, #WHERE))
      assert.are.equal(case[3], dead[1].last_error:sub(#WHERE + 1, #WHERE + #case[3]))
      assert.are.same({ 1, 0, 0 }, { q:stats().dead_lettered, q:stats().retried, q:stats().applied })
      assert.truthy(logged("ERROR event 1 (POST /webhook) is a dead letter at attempt 1: retrying "
        .. "cannot fix it: " .. WHERE .. case[3]))
      assert.are.same({}, ids("comment"))
    end)
  end

  -- what the mapping cannot make an entity of: the same event maps the
  -- same way at every attempt, so it is a dead letter at once, its reason
  -- naming the processor, the kind, the item and what the mapping said;
  -- the event's other items are applied
  local NOTE = "webhook processor 'notes' (/webhook) kind 'note': "
  local function notes(handle)
    return issues { name = "notes", get_matching_kinds = function() return { "note" } end,
                    handle_event = handle }
  end
  local GOOD = { id = "ok1", bp = "note", n = "fine" }
  for _, case in ipairs {
    { "a null identifier", { bp = "note", n = "x" },
      "updated item 2 was rejected by the mapping: identifier is null" },
    { "an empty identifier", { id = "", bp = "note" },
      "updated item 2 was rejected by the mapping: identifier is \"\"" },
    { "a null blueprint", { id = "n2" },
      "updated item 2 was rejected by the mapping: blueprint is null" },
    { "a jq error of the item", { id = "boom", bp = "note" },
      "updated item 2 was rejected by the mapping: selector must produce a boolean, got an error: the id is boom" },
    -- Port refuses what is not a string (a table is a search query): 422
    { "a boolean as identifier", { id = true, bp = "note" },
      "1 failed upserts, 0 failed deletions (note/(search identifier): 422 identifier must be a "
      .. "non-empty string or a search query)" },
    { "a number as identifier", { id = 7, bp = "note" },
      "1 failed upserts, 0 failed deletions (note/7: 422 identifier must be a non-empty string or a "
      .. "search query)" },
    { "a deleted item with a null identifier", { bp = "note" },
      "deleted item 1 was rejected by the mapping: identifier is null", true },
  } do
    it("makes an item the mapping rejects (" .. case[1] .. ") a dead letter at once, saying why", function()
      local q = start(nil, NOTES)
      ocean.add_webhook_processor("/webhook", notes(function()
        if case[4] then return { updated = { GOOD }, deleted = { case[2] } } end
        return { updated = { GOOD, case[2] } }
      end))
      q:start()
      post { issue = { id = "x" } }
      applied(q, 1)
      local dead = assert(q.j:dead())
      assert.are.equal(1, #dead, "dead letters: " .. json.encode(q:stats()))
      local why = NOTE .. case[3]
      assert.are.equal(why, dead[1].last_error:sub(1, #why), dead[1].last_error)
      assert.is_nil(dead[1].last_error:find("0 failed upserts", 1, true), dead[1].last_error)
      local st = q:stats()
      assert.are.same({ 1, 1, 0, 0 }, { dead[1].attempts, st.dead_lettered, st.retried, st.applied })
      assert.truthy(logged("ERROR event 1 (POST /webhook) is a dead letter at attempt 1: retrying "
        .. "cannot fix it: " .. why), table.concat(lines, "\n"))
      assert.is_nil(logged("retrying in"))
      assert.are.same({ "ok1" }, ids("note"))       -- the good item is written
    end)
  end

  it("names a mapping that does not compile once, with its kind, and retries the event", function()
    local bad = { resources = json.array { { kind = "note", selector = { query = "true" },
      port = { entity = { mappings = { identifier = ".id |", blueprint = '"note"' } } } } } }
    local q = start({ OCEAN__LIVE_EVENTS__MAX_ATTEMPTS = "1" }, bad)
    ocean.add_webhook_processor("/webhook", notes(function() return { updated = { GOOD } } end))
    q:start()
    post { issue = { id = "x" } }
    applied(q, 1)
    local dead = assert(q.j:dead())
    local want = NOTE .. "identifier: invalid jq expression '.id |': "
    assert.are.equal(want, dead[1].last_error:sub(1, #want))
    assert.is_nil(dead[1].last_error:find("; ", 1, true), dead[1].last_error)   -- said once
    assert.is_nil(dead[1].last_error:find("kind 'note': kind 'note'", 1, true), dead[1].last_error)
    -- the warm-up at start (ocean sail, nginx) says it once too
    local w = assert(require("ocean.integration").warm_mapping(ctx))
    assert.are.same({ 0, 1 }, { w.resources, w.failed })
    assert.truthy(logged("ERROR a resource does not compile (its resyncs and live events fail until "
      .. "the mapping is fixed): kind 'note': identifier: invalid jq expression '.id |'"))
    for _, l in ipairs(lines) do
      assert.is_nil(l:find("kind 'note': kind 'note'", 1, true), l)
      assert.is_nil(l:find("kind 'note' does not compile", 1, true), l)
    end
  end)

  for _, case in ipairs {
    { "a string", "comment", "got the string \"comment\"" },
    { "a number", 5, "got the number 5" },
    { "nothing", nil, "got nil" },
    { "a list holding a number", { "comment", 5 }, "got a list whose item 2 is the number 5" },
    { "a list holding a table", { { "comment" } }, "got a list whose item 1 is a table" },
    { "an object", { kind = "comment" }, "got a table with the key \"kind\", not a list" },
    { "a sparse list", { [1] = "comment", [3] = "issue" }, "got a sparse list (a hole at index 2)" },
  } do
    it("makes get_matching_kinds returning " .. case[1] .. " a dead letter at once, saying what it got", function()
      local q = start()
      ocean.add_webhook_processor("/webhook", issues { get_matching_kinds = function() return case[2] end })
      q:start()
      post { issue = { id = "k1" } }
      dead_at_once(q, "webhook processor 'issues' (/webhook): get_matching_kinds must return a list "
        .. "of kinds (strings), " .. case[3])
    end)
  end

  it("renders errors raised as tables readably, in the log and in the dead letter", function()
    local q = start { OCEAN__LIVE_EVENTS__MAX_ATTEMPTS = "1" }
    ocean.add_webhook_processor("/webhook", issues { max_retries = 1, initial_retry_delay_seconds = 0,
      should_retry = function() return true end,
      handle_event = function() error({ code = 1, reason = "down" }) end })
    q:start()
    post { issue = { id = "e1" } }
    applied(q, 1)
    local dead = assert(q.j:dead())
    assert.truthy(dead[1].last_error:find('{"code":1,"reason":"down"}', 1, true), dead[1].last_error)
    assert.truthy(logged('attempt 1/2 failed, retrying in 0.00 s: {"code":1,"reason":"down"}'))
    for _, l in ipairs(lines) do assert.is_nil(l:find("table: ", 1, true), l) end
    -- a table with a message: the message
    ocean.add_webhook_processor("/msg", issues { handle_event = function() error({ message = "the API said no" }) end })
    post({ issue = { id = "e2" } }, nil, "/msg")
    applied(q, 2)
    dead = assert(q.j:dead())
    assert.truthy(dead[2].last_error:find("the API said no", 1, true), dead[2].last_error)
    -- a table json cannot encode (a function in it): tostring, no error
    ocean.add_webhook_processor("/fn", issues { handle_event = function() error({ f = print }) end })
    post({ issue = { id = "e3" } }, nil, "/fn")
    applied(q, 3)
    dead = assert(q.j:dead())
    assert.truthy(dead[3].last_error:find("table: ", 1, true), dead[3].last_error)
  end)

  for _, fn in ipairs { "should_process_event", "authenticate", "validate_payload" } do
    -- the integration's code failed, not the sender: 500 for all three
    -- (a raising authenticate was 401, which senders do not retry)
    it("logs " .. fn .. " raising a table readably, and answers 500", function()
      start()
      local p = issues()
      p[fn] = function() error({ msg = fn .. " broke" }) end
      ocean.add_webhook_processor("/webhook", p)
      local status = post { issue = { id = "r1" } }
      assert.are.equal(500, status)
      assert.truthy(logged("ERROR webhook processor 'issues' (/webhook): " .. fn .. " failed: " .. fn
        .. " broke"), table.concat(lines, "\n"))
    end)
  end

  it("retries a wrong shape of one processor with a transient failure of another, not at once", function()
    local q = start { OCEAN__LIVE_EVENTS__MAX_ATTEMPTS = "2" }
    ocean.add_webhook_processor("/webhook", comments(function(p) return { updated = p.issue } end))
    local other = issues { name = "other", handle_event = function() error("the API is down", 0) end }
    ocean.add_webhook_processor("/webhook", other)
    q:start()
    post { issue = { id = "m1", state = "open" } }
    applied(q, 1)
    local dead = assert(q.j:dead())
    assert.are.same({ 1, 2 }, { #dead, dead[1].attempts })
    assert.truthy(logged("event 1 (POST /webhook) failed (attempt 1 of 2), retrying in 1 s"))
    assert.truthy(logged("is a dead letter after 2 attempts"))
  end)

  it("warns about a kind that no resource of the mapping has, with the closest one", function()
    local q = start()
    ocean.add_webhook_processor("/webhook", issues { get_matching_kinds = function() return { "issues", "zebra" } end })
    q:start()
    post { issue = { id = "t1", state = "open" } }
    applied(q, 1)
    assert.truthy(logged("WARNING event 1 (POST /webhook): get_matching_kinds named kind(s) 'issues' "
      .. "(did you mean 'issue'?), 'zebra' that no resource of the mapping has (its kinds: issue, "
      .. "comment); nothing is written for them"))
    assert.is_nil(logged("nothing to do"))
    -- nothing could be written: kept as a dead letter, to requeue once fixed
    assert.are.same({ 0, 1, 1 }, { q:stats().applied, q:stats().unknown_kinds, q:stats().dead_lettered })
    assert.truthy(logged("ERROR event 1 (POST /webhook) is a dead letter at attempt 1: retrying cannot "
      .. "fix it: get_matching_kinds named only kind(s) the mapping has no resource of (issues, zebra)"))
    -- one known kind beside a typo: the known one is applied, the typo still said
    ocean.add_webhook_processor("/both", issues { get_matching_kinds = function() return { "comment", "coment" } end,
      handle_event = function(p) return { updated = { { id = p.issue.id, text = "t" } } } end })
    post({ issue = { id = "t2" } }, nil, "/both")
    applied(q, 2)
    assert.are.same({ "t2" }, ids("comment"))
    assert.are.equal(1, q:stats().applied)
    assert.truthy(logged("named kind(s) 'coment' (did you mean 'comment'?)"))
    assert.are.equal(2, q:stats().unknown_kinds)
  end)

  it("never deletes by a numeric identifier: not coerced to another entity's, a dead letter", function()
    local q = start()
    ocean.add_webhook_processor("/webhook", comments(function(p)
      if p.action == "deleted" then return { deleted = { p.issue } } end
      return { updated = { { id = p.issue.id, text = "t" } } }
    end))
    q:start()
    post { issue = { id = "9" } }
    applied(q, 1)
    assert.are.same({ "9" }, ids("comment"))
    post { action = "deleted", issue = { id = 9 } }
    applied(q, 2)
    assert.are.same({ "9" }, ids("comment"))
    local dead = assert(q.j:dead())
    assert.are.same({ 1, 2, 1 }, { #dead, dead[1].id, dead[1].attempts })
    assert.are.equal("webhook processor 'issues' (/webhook) kind 'comment': 0 failed upserts, 1 "
      .. "failed deletions (comment/9: 422 not deleted: the identifier "
      .. "is the number 9, not a string (Port refuses such an identifier on an upsert, 422; entity "
      .. "\"9\" is another one))", dead[1].last_error)
    assert.truthy(logged("WARNING not deleting comment/9: the identifier is the number 9, not a string"))
    for _, r in ipairs(emu.requests()) do
      assert.is_falsy(r.method == "DELETE", "a delete reached Port: " .. r.path)
    end
  end)

  it("answers 503 when live events were not started, and names a bad processor", function()
    start()
    ctx.event_queue:close()
    ctx.event_queue = nil
    ocean.add_webhook_processor("/webhook", issues())
    local status, body = post { issue = { id = "z" } }
    assert.are.same({ 503, { status = "error", message = "live events are not started" } }, { status, body })
    assert.has_error(function() ocean.add_webhook_processor("/x", { handle_event = print }) end,
      "add_webhook_processor(/x): the processor has no function should_process_event (it needs "
      .. "should_process_event, get_matching_kinds, authenticate, validate_payload, handle_event)")
    assert.has_error(function() ocean.add_webhook_processor("x", {}) end,
      "add_webhook_processor: the path must start with '/', got x")
    local p = issues()
    p.max_retries = -1
    assert.has_error(function() ocean.add_webhook_processor("/y", p) end,
      "add_webhook_processor(/y): max_retries must be a number >= 0")
  end)

  it("refuses a second queue on the same journal, naming the way out", function()
    local q = start()
    local again, err = journal.open(q.path)
    assert.is_nil(again)
    assert.matches("in use", err)
    local eng2 = require("ocean.engine").new()
    local q2, err2 = eng2:open_live_events { path = q.path }
    assert.is_nil(q2)
    assert.matches("set OCEAN__LIVE_EVENTS__JOURNAL_DIR", err2)
    eng2:close()
  end)
end)
