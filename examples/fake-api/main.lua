-- Teams and users of a third-party HTTP API (here fake_api.lua) as Port
-- entities, the way most integrations look: a resync that pages through
-- the API with ocean.http, and a webhook that applies single changes.
--
--   kind `team`: one request, a plain list (a resync function returning
--                a list)
--   kind `user`: a generator yielding one page at a time, following the
--                API's Link: rel="next" headers; the engine upserts page N
--                while the function fetches page N+1
--   POST /integration/webhook: {"action": "created"|"updated"|"deleted",
--                "user": {...}} -> a webhook processor: answered once
--                journaled, the user read again from the API, then
--                register_raw / unregister_raw in the background
local ocean = require "ocean"

local function api(path)
  return (ocean.integration_config.api_url:gsub("/+$", "")) .. path
end

ocean.on_resync("team", function()
  local teams, err = ocean.http.get_json(api("/teams"))
  if not teams then error(err, 0) end   -- the kind fails; nothing is deleted
  return teams
end)

ocean.on_resync("user", function()
  local per_page = ocean.integration_config.page_size or 10
  for page in ocean.http.paginate(api("/users"), { query = { per_page = per_page } }) do
    coroutine.yield(page)
  end
end)

-- {==================== live events ====================

-- The API's webhooks, {"action": "created" | "updated" | "deleted",
-- "user": {...}}, through a webhook processor (Ocean's model of live
-- events): the sender gets 401 (wrong X-Webhook-Secret, once webhookSecret
-- is set) or 400 (not a user event this can apply) at once, else
-- {"status":"ok"} as soon as the event is journaled on disk. handle_event
-- runs in the background: it reads the user again from the API (the event
-- may be old by then), and its result is written to Port. A user that is
-- no longer active fails the mapping's selector: register_raw deletes its
-- entity. An API that fails is retried (ocean.retryable), then the whole
-- event is, from the journal, with backoff.
local ACTIONS = { created = true, updated = true, deleted = true }

ocean.add_webhook_processor("/webhook", {
  name = "users",
  should_process_event = function(event) return event.payload.action ~= nil end,
  get_matching_kinds = function() return { "user" } end,
  authenticate = function(_, headers)
    local secret = ocean.integration_config.webhook_secret
    return secret == nil or ocean.secure_compare(headers["x-webhook-secret"], secret)
  end,
  validate_payload = function(payload)
    return ACTIONS[payload.action] == true and type(payload.user) == "table"
      and type(payload.user.login) == "string"
  end,
  handle_event = function(payload)
    local user = payload.user
    if payload.action == "deleted" then return { updated = {}, deleted = { user } } end
    local res, err = ocean.http.get(api("/users/" .. ocean.http.escape(user.login)))
    if not res then error(ocean.retryable(err)) end
    if res.status == 404 then return { updated = {}, deleted = { user } } end  -- gone since
    if res.status == 429 or res.status >= 500 then
      error(ocean.retryable(("GET /users/%s: HTTP %d"):format(user.login, res.status)))
    end
    local fresh = res.ok and res:json()
    if not fresh then error(("GET /users/%s: HTTP %d"):format(user.login, res.status), 0) end
    return { updated = { fresh }, deleted = {} }
  end,
})

-- }====================
