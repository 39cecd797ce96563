-- ocean.webhook: Ocean's webhook processors (port_ocean/core/handlers/
-- webhook: AbstractWebhookProcessor and the LiveEventsProcessorManager),
-- on an engine, with the durable queue of ocean.event_queue under them.
--
--   ocean.add_webhook_processor("/webhook", {
--     name = "issues",                                   -- for the log
--     should_process_event = function(event) return event.headers["x-kind"] == "issue" end,
--     get_matching_kinds = function(event) return { "issue" } end,
--     authenticate = function(payload, headers, event)   -- event.raw_body: the bytes received
--       local sig = "sha256=" .. ocean.hmac("sha256", secret, event.raw_body)
--       return ocean.secure_compare(headers["x-hub-signature-256"] or "", sig)
--     end,
--     validate_payload = function(payload) return type(payload.issue) == "table" end,
--     handle_event = function(payload, resource)         -- resource: its config
--       local issue = ocean.http.get_json(api .. "/issues/" .. payload.issue.id)
--       if not issue then return { updated = {}, deleted = { payload.issue } } end
--       return { updated = { issue }, deleted = {} }
--     end,
--   })
--
-- The five functions are Ocean's, called as plain functions (no self):
--   should_process_event(event) -> bool    does this processor want it?
--   get_matching_kinds(event) -> {kind...} the kinds it produces
--   authenticate(payload, headers, event) -> bool  is the sender who it
--                                          says? (event: the third
--                                          argument, for event.raw_body)
--   validate_payload(payload) -> bool      is it shaped as expected?
--   handle_event(payload, resource) -> {updated = raw_objects,
--                                       deleted = raw_objects}
-- event = {path=, payload= (the decoded JSON body), raw_body= (the body's
-- bytes as received: what a signature such as GitHub's
-- X-Hub-Signature-256 is computed over; the same string before the answer
-- and in the background, where it is the journal's copy), headers=
-- (lower-case names), received_at= (s since the epoch), id= (the
-- journal's; in the background only), trace_id=}. Optional, with Ocean's defaults:
-- max_retries (3), initial_retry_delay_seconds (1), max_retry_delay_seconds
-- (30), exponential_base_seconds (2), should_retry(err) (Ocean: a
-- RetryableError; here ocean.is_retryable(err), true for what
-- ocean.retryable(message) made), before_processing(event),
-- after_processing(event), on_error(err, event).
--
-- The flow (Ocean's, and where it differs):
--   1. POST <path> reaches the route the first processor of the path
--      added (under /integration). The body must be JSON (400 before
--      anything else). Each processor of the path is asked
--      should_process_event(event); none: 200 {"status":"ok"} and the
--      event is dropped, logged (Ocean: the worker raises "No matching
--      processors found").
--   2. Before the answer (Ocean runs these in its worker, after
--      answering ok to everything): every processor that wants the event
--      must authenticate it — one refusal answers 401 {"status":"error",
--      "message":"authentication failed"}; then validate_payload — when
--      no such processor accepts the payload, 400 {"status":"error",
--      "message":"invalid payload"}. Why: a sender told "ok" never
--      learns that its secret or its format is wrong, and an event that
--      can never be applied would only fill the journal.
--   3. The event (path, headers, raw body, time) is appended to the
--      journal — on disk before the answer — and the sender gets 200
--      {"status":"ok"} (503 {"status":"error"} when it could not be
--      journaled: the sender retries).
--   4. In the background (ocean.event_queue), for each processor that
--      wants the event and accepts its payload (authenticate is not asked
--      again: a signature may hold a time stamp that has expired since),
--      each of its kinds, and each resource of that kind in the mapping,
--      handle_event(payload, resource) runs, all of them concurrently
--      (ocean.gather), each retried as Ocean does (should_retry, backoff,
--      max_retries).
--   5. The results are applied per resource, with that resource only:
--      one sync_raw_results(kind, {updated =, deleted =}) each (updates
--      first; entities that now fail the selector are deleted if owned;
--      a mapping error deletes nothing), all submitted to the engine's
--      live session before any is awaited, so that they share its
--      coalesced batches (docs/live-events.md). Results of processors that
--      succeeded are applied even when another failed (Ocean); the event
--      is then retried as a whole later (applying is idempotent).
--   6. Done: the event leaves the journal. Failed: the journal counts the
--      attempt; it is retried with backoff, and after its last attempt it
--      becomes a dead letter (logged), see ocean.event_queue. A failure
--      retrying cannot fix (handle_event's result of the wrong shape:
--      check_result; get_matching_kinds' not a list of strings:
--      bad_kinds; an item the mapping rejects: add_report; Port's
--      400/413/422 for an entity: PERMANENT_STATUS) makes it a dead letter at
--      once. Each failure begins "webhook processor 'p' (/path) kind 'k': ".
-- Errors the functions raise are said with error_text (a table's message,
-- or its JSON).
-- handle_event's result is strict: {updated = {raw...}, deleted =
-- {raw...}}, both optional lists of tables, no other key (Ocean's
-- updated_raw_results/deleted_raw_results are named updated/deleted
-- here). A kind get_matching_kinds names that the mapping lacks is a
-- WARNING with the closest kind (config.closest).
-- Every step is logged (INFO for the event's life, WARNING for refusals
-- and failures, ERROR for a dead letter). Not supported: Ocean's ACTION
-- processors (get_processor_type), lakehouse and DSP modes.
local config = require "ocean.config"
local core = require "ocean.core"
local json = require "ocean.json"
local log = require "ocean.log"
local ops = require "ocean.ops"

local type, ipairs, pairs, next, tostring, pcall, error, setmetatable, getmetatable =
  type, ipairs, pairs, next, tostring, pcall, error, setmetatable, getmetatable
local min, floor = math.min, math.floor
local format, concat = string.format, table.concat

local _M = {}

local REQUIRED = { "should_process_event", "get_matching_kinds", "authenticate",
                   "validate_payload", "handle_event" }
local OPTIONAL = { "should_retry", "before_processing", "after_processing", "on_error" }
local NUMBERS = { max_retries = 3, initial_retry_delay_seconds = 1,
                  max_retry_delay_seconds = 30, exponential_base_seconds = 2 }

-- {==================== retryable errors ====================

local Retryable = {}
Retryable.__index = Retryable
Retryable.__tostring = function(e) return tostring(e.message) end

-- An error worth retrying (Ocean's RetryableError):
-- error(ocean.retryable("the API answered 502")).
function _M.retryable(message)
  return setmetatable({ message = message, retryable = true }, Retryable)
end

function _M.is_retryable(e)
  return getmetatable(e) == Retryable
end

-- An error retrying the event cannot fix (a processor's result of the
-- wrong shape): the event becomes a dead letter at once. Internal.
local Permanent = {}
Permanent.__index = Permanent
Permanent.__tostring = function(e) return tostring(e.message) end

local function permanent(message)
  return setmetatable({ message = message }, Permanent)
end

local function is_permanent(e)
  return getmetatable(e) == Permanent
end

-- An error a processor raised, as text for the log and the journal: a
-- string (or a number) as itself; a table with a __tostring (ocean.retryable's)
-- through it; another table: its `message` (or `msg`) field when it has a
-- string or number there, else compact JSON with sorted keys
-- (json.canonical: error({code = 1}) is '{"code":1}'), else, when it
-- cannot be encoded (a function in it, a cycle), tostring.
function _M.error_text(e)
  if type(e) ~= "table" then return tostring(e) end
  local mt = getmetatable(e)
  if mt and mt.__tostring then return tostring(e) end
  local m = e.message
  if m == nil then m = e.msg end
  if type(m) == "string" or type(m) == "number" then return tostring(m) end
  local ok, text = pcall(json.canonical, e)
  if ok and type(text) == "string" then return text end
  return tostring(e)
end
local error_text = _M.error_text

-- }====================

-- {==================== registration ====================

local function check_processor(path, p, level)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("add_webhook_processor: the path must start with '/', got " .. tostring(path), level + 1)
  end
  if type(p) ~= "table" then
    error("add_webhook_processor: expected a processor table, got " .. type(p), level + 1)
  end
  for _, name in ipairs(REQUIRED) do
    if type(p[name]) ~= "function" then
      error(format("add_webhook_processor(%s): the processor has no function %s (it needs %s)",
        path, name, concat(REQUIRED, ", ")), level + 1)
    end
  end
  for _, name in ipairs(OPTIONAL) do
    if p[name] ~= nil and type(p[name]) ~= "function" then
      error(format("add_webhook_processor(%s): %s must be a function", path, name), level + 1)
    end
  end
  for name in pairs(NUMBERS) do
    local v = p[name]
    if v ~= nil and (type(v) ~= "number" or v < 0) then
      error(format("add_webhook_processor(%s): %s must be a number >= 0", path, name), level + 1)
    end
  end
  if p.name ~= nil and type(p.name) ~= "string" then
    error(format("add_webhook_processor(%s): name must be a string", path), level + 1)
  end
end

-- The registry an engine keeps: {paths = {[path] = {entry...}}, count=}.
function _M.new_registry()
  return { paths = {}, count = 0 }
end

local reply

-- Register processor p for path on engine eng (its registry, its router).
function _M.add(eng, path, p)
  check_processor(path, p, 2)   -- tail-called by ocean.add_webhook_processor: 3 is its caller
  local reg = eng.webhooks
  local list = reg.paths[path]
  if not list then
    list = {}
    reg.paths[path] = list
    eng.router:route("POST", path, function(req) return reply(eng, path, req) end)
  end
  local entry = { p = p, name = p.name or ("#" .. (#list + 1)) }
  for name, default in pairs(NUMBERS) do
    entry[name] = p[name] == nil and default or p[name]
  end
  list[#list + 1] = entry
  reg.count = reg.count + 1
  return p
end

-- }====================

-- {==================== calling processors ====================

-- fn_name of entry, protected: ok, value | false, message.
local function call(entry, path, fn_name, ...)
  local ok, v = pcall(entry.p[fn_name], ...)
  if ok then return true, v end
  return false, format("webhook processor '%s' (%s): %s failed: %s", entry.name, path, fn_name,
    error_text(v))
end

local function event_of(path, payload, raw_body, headers, received_at, id)
  return { path = path, payload = payload, raw_body = raw_body, headers = headers,
           received_at = received_at, id = id, trace_id = id and ("event-" .. id) or nil }
end

local function status_error(status, message)
  return status, { status = "error", message = message }
end

-- Step 1 and 2: the processors that want the event. nil, status, body
-- when the sender must hear otherwise.
local function check_before_answer(eng, path, ev)
  local wanted = {}
  for _, entry in ipairs(eng.webhooks.paths[path]) do
    local ok, v = call(entry, path, "should_process_event", ev)
    if not ok then
      log.error("%s", v)
      return nil, status_error(500, "a webhook processor failed")
    end
    if v then wanted[#wanted + 1] = entry end
  end
  if #wanted == 0 then return wanted end
  local valid = 0
  for _, entry in ipairs(wanted) do
    local ok, v = call(entry, path, "authenticate", ev.payload, ev.headers, ev)
    if not ok then
      -- the integration's code failed, not the sender's credentials: 500,
      -- which senders retry (a 401 tells them their secret is wrong)
      log.error("%s", v)
      return nil, status_error(500, "a webhook processor failed")
    end
    if not v then
      log.warning("webhook POST %s refused: processor '%s' did not authenticate it (401)",
        path, entry.name)
      return nil, status_error(401, "authentication failed")
    end
  end
  for _, entry in ipairs(wanted) do
    local ok, v = call(entry, path, "validate_payload", ev.payload)
    if not ok then
      log.error("%s", v)
      return nil, status_error(500, "a webhook processor failed")
    end
    if v then
      valid = valid + 1
    else
      log.warning("webhook POST %s: processor '%s' found the payload invalid", path, entry.name)
    end
  end
  if valid == 0 then
    log.warning("webhook POST %s refused: no processor accepts its payload (400)", path)
    return nil, status_error(400, "invalid payload")
  end
  return wanted
end

-- Headers as the journal keeps them: one string per name (a repeated
-- header, which nginx gives as a list, joined with ", ").
local function flat_headers(h)
  local out = {}
  for k, v in pairs(h or {}) do
    if type(v) == "table" then v = concat(v, ", ") end
    out[tostring(k):lower()] = tostring(v)
  end
  return out
end

-- The route of a path: steps 1 to 3.
function reply(eng, path, req)
  local payload = req.body
  if payload == nil then
    log.warning("webhook POST %s refused: it has no body (400)", path)
    return status_error(400, "the webhook has no body")
  end
  if type(payload) ~= "table" then   -- null, a number, a string, a boolean
    log.warning("webhook POST %s refused: the body is JSON %s, not an object or array (400)", path,
      payload == json.null and "null" or type(payload))
    return status_error(400, "the webhook body must be a JSON object or array")
  end
  local headers = flat_headers(req.headers)
  -- the receive time orders the events per entity (apply): the system
  -- clock's own resolution, not nginx's cached milliseconds, so that two
  -- webhooks of one loop iteration are not equal
  local ev = event_of(path, payload, req.raw_body, headers, core.now())
  local wanted, status, body = check_before_answer(eng, path, ev)
  if not wanted then return status, body end
  if #wanted == 0 then
    log.info("webhook POST %s: no processor wants this event; ignored", path)
    return 200, { status = "ok" }
  end
  local q = eng.event_queue
  if not q then
    log.error("webhook POST %s: live events are not started (no journal): answering 503", path)
    return status_error(503, "live events are not started")
  end
  local id, err = q:append { path = path, headers = headers, body = ev.raw_body,
                             received_at = ev.received_at }
  if not id then
    log.error("webhook POST %s not journaled: %s", path, tostring(err))
    return status_error(503, "the event could not be stored")
  end
  log.info("event %d (POST %s) journaled for %d processor(s)", id, path, #wanted)
  return 200, { status = "ok" }
end

-- }====================

-- {==================== processing (background) ====================

-- Ocean's calculate_retry_delay after retry_count retries.
local function retry_delay(entry, retry_count)
  return min(entry.initial_retry_delay_seconds * entry.exponential_base_seconds ^ retry_count,
             entry.max_retry_delay_seconds)
end

local function should_retry(entry, err)
  if entry.p.should_retry then
    local ok, v = pcall(entry.p.should_retry, err)
    return ok and v and true or false
  end
  return _M.is_retryable(err)
end

-- The keys of handle_event's result (Ocean's WebhookEventRawResults has
-- updated_raw_results and deleted_raw_results: named `updated` and
-- `deleted` here, as the issue and the docs say).
local RESULT_KEYS = { updated = true, deleted = true }
local OCEAN_KEYS = { updated_raw_results = "updated", deleted_raw_results = "deleted" }

-- A table with only the integer keys 1..n (a JSON array, or an empty
-- table): n; or nil, bad when it has another key (bad: the first in
-- tostring order); or nil, nil, hole when its keys are all positive
-- integers but index hole is missing (a sparse list: {[1]=a, [3]=b}).
local function list_length(t)
  local n, bad = 0, nil
  for k in pairs(t) do
    if type(k) == "number" and k >= 1 and k % 1 == 0 then
      n = n + 1
    elseif bad == nil or tostring(k) < tostring(bad) then
      bad = k                                -- the first in order: a stable message
    end
  end
  if bad ~= nil then return nil, bad end
  for i = 1, n do
    if t[i] == nil then return nil, nil, i end   -- the first hole
  end
  return n
end

-- One of handle_event's lists: nil or null -> {}; a list of raw objects
-- (tables that are not lists themselves) -> itself; anything else raises
-- a permanent error naming the processor, the kind and the key.
local function check_list(v, key, where)
  if v == nil or v == json.null then return {} end
  local hint = "; it must be a list of raw objects, e.g. { " .. key .. " = { obj } }"
  if type(v) ~= "table" then
    error(permanent(format("%s: handle_event's %s is a %s, not a list of raw objects%s", where,
      key, type(v), hint)), 0)
  end
  local n, bad, hole = list_length(v)
  if hole then
    error(permanent(format("%s: handle_event's %s is a sparse list (a hole at index %d), not a "
      .. "list of raw objects%s", where, key, hole, hint)), 0)
  end
  if not n then
    error(permanent(format("%s: handle_event's %s is a single object (it has the key %s), not a "
      .. "list of raw objects%s", where, key, format("%q", tostring(bad)), hint)), 0)
  end
  for i = 1, n do
    local item = v[i]
    if type(item) ~= "table" or item == json.null then
      error(permanent(format("%s: handle_event's %s[%d] is %s, not a raw object (a table)%s", where,
        key, i, item == json.null and "null" or "a " .. type(item), hint)), 0)
    end
    local ilen, _, ihole = list_length(item)
    if next(item) ~= nil and (ilen or ihole) then
      error(permanent(format("%s: handle_event's %s[%d] is a list, not a raw object (a list of "
        .. "lists?)%s", where, key, i, hint)), 0)
    end
  end
  return v
end

-- handle_event's result, strict: {updated = {raw...}, deleted = {raw...}},
-- both optional, no other key. Raises a permanent error.
local function check_result(res, where)
  if type(res) ~= "table" or res == json.null then
    error(permanent(format("%s: handle_event must return {updated = {raw objects}, deleted = "
      .. "{raw objects}}, got %s", where, res == json.null and "null" or type(res))), 0)
  end
  for k in pairs(res) do
    if not RESULT_KEYS[k] then
      local ocean_name = OCEAN_KEYS[k]
      error(permanent(format("%s: handle_event returned an unknown key %s: the allowed keys are "
        .. "updated and deleted (lists of raw objects)%s", where, format("%q", tostring(k)),
        ocean_name and format("; Ocean's %s is %s here", k, ocean_name) or "")), 0)
    end
  end
  return { updated = check_list(res.updated, "updated", where),
           deleted = check_list(res.deleted, "deleted", where) }
end

-- Step 4 for one (processor, resource): handle_event with Ocean's retries.
-- Returns {updated=, deleted=} or raises.
local function handle(eng, ev, m)
  local entry, path = m.entry, ev.path
  if entry.p.before_processing then
    local ok, err = call(entry, path, "before_processing", ev)
    if not ok then error(err, 0) end
  end
  local retries = 0
  while true do
    local ok, res = pcall(entry.p.handle_event, ev.payload, m.resource)
    if ok then
      local out = check_result(res, format("webhook processor '%s' (%s) kind '%s'", entry.name,
        path, m.kind))
      if entry.p.after_processing then
        local aok, aerr = call(entry, path, "after_processing", ev)
        if not aok then error(aerr, 0) end
      end
      return out
    end
    if entry.p.on_error then pcall(entry.p.on_error, res, ev) end
    if not (should_retry(entry, res) and retries < entry.max_retries) then
      error(res, 0)
    end
    retries = retries + 1
    local delay = retry_delay(entry, retries)
    log.warning("event %s: processor '%s' kind '%s': attempt %d/%d failed, retrying in %.2f s: %s",
      tostring(ev.id), entry.name, m.kind, retries, entry.max_retries + 1, delay, error_text(res))
    eng:sleep(delay)
  end
end

-- A value a processor returned, said in a message: `the string "x"`,
-- `the number 5`, `nil`, `a table`...
local function describe(v)
  if v == nil then return "nil" end
  if v == json.null then return "null" end
  if type(v) == "string" then
    return "the string " .. json.encode(#v > 60 and v:sub(1, 60) .. "..." or v)
  end
  if type(v) == "number" or type(v) == "boolean" then
    return format("the %s %s", type(v), tostring(v))
  end
  return "a " .. type(v)
end

-- get_matching_kinds' result when it is not a list of strings: what it
-- is ("got the string \"ticket\"", "got a list whose item 2 is the
-- number 5"...); nil when it is one.
local function bad_kinds(kinds)
  if type(kinds) ~= "table" or kinds == json.null then return "got " .. describe(kinds) end
  local n, bad, hole = list_length(kinds)
  if hole then return format("got a sparse list (a hole at index %d)", hole) end
  if not n then
    return format("got a table with the key %s, not a list", format("%q", tostring(bad)))
  end
  for i = 1, n do
    if type(kinds[i]) ~= "string" then
      return format("got a list whose item %d is %s", i, describe(kinds[i]))
    end
  end
  return nil
end

-- The (processor, kind, resource) matches of an event. nil, err,
-- permanent when they cannot be known (permanent: get_matching_kinds
-- returned something else than a list of kinds, which the same event
-- makes it return again).
local function matches_of(eng, ev, app)
  local list = eng.webhooks.paths[ev.path]
  if not list then return nil, "no webhook processor is registered for POST " .. ev.path end
  local out, kinds_seen = {}, {}
  for _, entry in ipairs(list) do
    local ok, wants = call(entry, ev.path, "should_process_event", ev)
    if not ok then return nil, wants end
    local valid
    if wants then
      ok, valid = call(entry, ev.path, "validate_payload", ev.payload)
      if not ok then return nil, valid end
      if not valid then
        log.warning("event %d: processor '%s' found the payload invalid; skipped", ev.id, entry.name)
      end
    end
    if wants and valid then
      local kok, kinds = call(entry, ev.path, "get_matching_kinds", ev)
      if not kok then return nil, kinds end
      local bad = bad_kinds(kinds)
      if bad then
        return nil, format("webhook processor '%s' (%s): get_matching_kinds must return a list of "
          .. "kinds (strings), %s", entry.name, ev.path, bad), true
      end
      for _, kind in ipairs(kinds) do
        kinds_seen[#kinds_seen + 1] = kind
        for index, r in ipairs(app.resources) do
          if type(r) == "table" and r.kind == kind then
            out[#out + 1] = { entry = entry, kind = kind, resource = r, index = index }
          end
        end
      end
    end
  end
  return out, kinds_seen
end

-- The mapping with one resource: the operations then map with it alone.
local function with_one(app, resource, index)
  local one = {}
  for k, v in pairs(app) do one[k] = v end
  one.resources = json.array { resource }
  -- its place in the whole mapping (ocean.ops: the metrics' kind-index)
  one.resource_places = { index }
  return one
end

-- Port's answers that are a property of the entity itself (400 bad
-- request, 422 an invalid entity: a numeric identifier, a property of the
-- wrong type...): the same entity is refused again however often it is
-- sent, so retrying the event cannot fix it. Everything else may pass
-- later and is retried: 404 (a related entity missing: another event may
-- create it meanwhile; blueprint_not_found: the user may create the
-- blueprint), 401/403 (a token, a permission being fixed), 408, 409 (a
-- conflict of the moment), 429, 5xx, no answer.
local PERMANENT_STATUS = { [400] = true, [413] = true, [422] = true }

-- The counts of a live session's report (ocean.ops) summed over the
-- resources of an event, and why it failed added to `errors` (strings,
-- each beginning with `where`: "webhook processor 'p' (/path) kind 'k': ").
-- total.transient counts the failures retrying may fix. Not those:
-- * an item the mapping rejects (dropped_items: its identifier or
--   blueprint null or empty; item_errors: jq raised for it), unless the
--   mapping's time or memory budget stopped it (a loaded machine may
--   pass): the same event maps the same way at every attempt;
-- * Port's answers with a PERMANENT_STATUS.
-- The operation's other errors (a mapping that does not compile: it may
-- be fixed and read again; the session closed...) may pass.
local COUNTS = { "created", "updated", "unchanged", "failed", "deleted", "not_owned", "kept",
                 "superseded", "delete_failed" }
local LIST_OF = { upsert = "updated", delete = "deleted" }   -- handle_event's lists
local function add_report(total, rep, errors, where, kind)
  for _, k in ipairs(COUNTS) do
    total[k] = (total[k] or 0) + (rep[k] or 0)
  end
  local said, n0 = {}, #errors
  for _, e in ipairs(rep.item_errors or {}) do
    said[e.text] = true
    if e.more then
      errors[#errors + 1] = format("%s... and %d more items rejected by the mapping", where, e.more)
    else
      errors[#errors + 1] = format("%s%s item %d was rejected by the mapping: %s", where,
        LIST_OF[e.mode] or "", e.index, tostring(e.message))
    end
    if e.budget then total.transient = total.transient + 1 end
  end
  for _, d in ipairs(rep.dropped_items or {}) do
    errors[#errors + 1] = format("%s%s item %d was rejected by the mapping: %s", where,
      LIST_OF[d.mode] or "", d.index, tostring(d.message or d.reason))
  end
  local kind_prefix = format("kind '%s': ", kind)   -- where names it already
  for _, e in ipairs(rep.errors or {}) do
    if not said[e] then
      said[e] = true                 -- once (a mapping that does not compile: updated, deleted)
      if e:sub(1, #kind_prefix) == kind_prefix then e = e:sub(#kind_prefix + 1) end
      errors[#errors + 1] = where .. e
      total.transient = total.transient + 1
    end
  end
  local failures = rep.failures or {}
  if (rep.failed or 0) + (rep.delete_failed or 0) + #failures > 0 then
    local why = {}
    for _, f in ipairs(failures) do
      why[#why + 1] = format("%s/%s: %s%s", tostring(f.blueprint), tostring(f.identifier),
        f.status and f.status ~= 0 and (f.status .. " ") or "",
        tostring(f.message or f.error or f.status))
      if not PERMANENT_STATUS[f.status] then total.transient = total.transient + 1 end
    end
    -- failures not listed: may pass
    if #why == 0 then total.transient = total.transient + 1 end
    errors[#errors + 1] = format("%s%d failed upserts, %d failed deletions%s", where,
      rep.failed or 0, rep.delete_failed or 0, #why > 0 and " (" .. concat(why, "; ") .. ")" or "")
  end
  if rep.ok == false and #errors == n0 then
    -- failed without a reason given: may pass
    total.transient = total.transient + 1
    errors[#errors + 1] = where .. "the live operation failed (no reason given)"
  end
end

-- Step 5: apply the results through the live session: one
-- sync_raw_results per resource (its updates, then its deletions), every
-- job submitted before the first is awaited, so that the resources of
-- this event (and other events applied meanwhile) share bulk requests.
-- The writes carry the event's receive time (seq, µs): an entity a newer
-- event already wrote is left as that one wrote it (superseded), so an
-- event retried after its backoff never undoes a newer one
-- (live_session.h).
local function apply(eng, app, done, total, errors, received_at, path)
  local jobs, wheres, kinds = {}, {}, {}
  local seq = received_at and floor(received_at * 1e6) or nil
  for _, d in ipairs(done) do
    local res = d.res
    if #res.updated > 0 or #res.deleted > 0 then
      kinds[#jobs + 1] = d.m.kind
      wheres[#jobs + 1] = format("webhook processor '%s' (%s) kind '%s': ", d.m.entry.name, path,
        d.m.kind)
      jobs[#jobs + 1] = eng:submit("sync_raw_results", d.m.kind,
        { updated = res.updated, deleted = res.deleted },
        { app_config = with_one(app, d.m.resource, d.m.index), seq = seq })
    end
  end
  -- ops.await: the session's own log lines said, an unfinished job a report
  for i, job in ipairs(jobs) do add_report(total, ops.await(eng, job), errors, wheres[i], kinds[i]) end
end

-- The kinds get_matching_kinds named that no resource of the mapping has
-- (a typo, or a resource the user removed): one WARNING per event, with
-- the closest kind of the mapping when one is close enough to be a typo.
local function warn_unknown_kinds(ev, app, kinds)
  local have, list = {}, {}
  for _, r in ipairs(app.resources or {}) do
    if type(r) == "table" and type(r.kind) == "string" and not have[r.kind] then
      have[r.kind] = true
      list[#list + 1] = r.kind
    end
  end
  local missing = {}
  for _, kind in ipairs(kinds) do
    if not have[kind] then
      local near = config.closest(kind, list)
      missing[#missing + 1] = format("'%s'%s", kind, near and format(" (did you mean '%s'?)", near)
        or "")
    end
  end
  if #missing == 0 then return 0 end
  log.warning("event %d (POST %s): get_matching_kinds named kind(s) %s that no resource of the "
    .. "mapping has (its kinds: %s); nothing is written for them", ev.id, ev.path,
    concat(missing, ", "), #list > 0 and concat(list, ", ") or "none")
  return #missing
end

-- Process one journaled event (a record of the journal: id, path,
-- headers, body, received_at, attempts). Returns a summary table
-- ({matched=, created=, updated=, deleted=, ..., unknown_kinds=}), or
-- nil, err, summary, permanent when it failed: permanent is true when
-- every failure of the attempt is one retrying cannot fix (a
-- handle_event result of the wrong shape; get_matching_kinds' result not
-- a list of strings; an item the mapping rejects; Port's 400, 413 or 422 for
-- an entity, see PERMANENT_STATUS): the queue then makes it a dead
-- letter at once instead of retrying it.
function _M.process(eng, rec)
  local payload = json.decode(rec.body)
  if payload == nil then return nil, "the journaled body is not JSON" end
  local ev = event_of(rec.path, payload, rec.body, rec.headers, rec.received_at, rec.id)
  local app, aerr = eng:app_config()
  if not app then return nil, "the mapping could not be read: " .. tostring(aerr) end
  local matched, kinds, bad_shape = matches_of(eng, ev, app)
  if not matched then return nil, kinds, nil, bad_shape end
  local unknown = warn_unknown_kinds(ev, app, kinds)
  if #matched == 0 then
    if unknown == 0 then
      log.info("event %d (POST %s): its processors named no kind; nothing to do", ev.id, ev.path)
      return { matched = 0 }
    end
    -- only kinds the mapping lacks (a typo, a resource not deployed yet):
    -- kept as a dead letter to requeue once the kind or the mapping is
    -- fixed, not applied as "nothing matched" and lost
    return nil, ("get_matching_kinds named only kind(s) the mapping has no resource of (%s): "
      .. "nothing could be written; fix the kind or the mapping, then requeue it"):format(
      concat(kinds, ", ")), { matched = 0, unknown_kinds = unknown }, true
  end
  local names = {}
  for i, m in ipairs(matched) do
    names[i] = format("processor '%s' kind '%s' (resource %d)", m.entry.name, m.kind, m.index)
  end
  log.info("event %d (POST %s), attempt %d: %s", ev.id, ev.path, rec.attempts or 1,
    concat(names, ", "))
  local fns = {}
  for i, m in ipairs(matched) do fns[i] = function() return handle(eng, ev, m) end end
  local results, failures = eng:gather(fns, { return_errors = true })
  local done, errors = {}, {}
  local total = { matched = #matched, unknown_kinds = unknown, transient = 0 }
  for i, m in ipairs(matched) do
    local r = results[i]
    if r then
      log.debug("event %d: %s returned %d updated, %d deleted", ev.id, names[i], #r.updated,
        #r.deleted)
    end
    local f = failures[i]
    if f ~= nil then
      if is_permanent(f) then
        errors[#errors + 1] = tostring(f)    -- names the processor and the kind
      else
        total.transient = total.transient + 1
        errors[#errors + 1] = format("webhook processor '%s' (%s) kind '%s': %s", m.entry.name,
          ev.path, m.kind, error_text(f))
      end
    else
      done[#done + 1] = { m = m, res = results[i] }
    end
  end
  apply(eng, app, done, total, errors, tonumber(rec.received_at), ev.path)
  if #errors > 0 then return nil, concat(errors, "; "), total, total.transient == 0 end
  return total
end

-- }====================

return _M
