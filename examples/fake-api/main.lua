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
--                "user": {...}} -> register_raw / unregister_raw
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

-- Inactive users fail the mapping's selector (.active): register_raw then
-- deletes their entity, as Ocean does.
ocean.router.post("/webhook", function(req)
  local event = req.body
  if type(event) ~= "table" or type(event.user) ~= "table" then
    return 400, { ok = false, error = "expected {\"action\": ..., \"user\": {...}}" }
  end
  local report
  if event.action == "deleted" then
    report = ocean.unregister_raw("user", event.user)
  elseif event.action == "created" or event.action == "updated" then
    report = ocean.register_raw("user", event.user)
  else
    return 400, { ok = false, error = "unknown action " .. tostring(event.action) }
  end
  if not report.ok then
    local why = #report.errors > 0 and table.concat(report.errors, "; ")
      or ("%d failed upserts, %d failed deletions"):format(report.failed or 0,
        report.delete_failed or 0)
    ocean.log.error("webhook %s %s: %s", event.action, tostring(event.user.login), why)
    return 502, { ok = false, error = why }
  end
  return { ok = true, created = report.created, updated = report.updated,
           deleted = report.deleted or 0 }
end)
