-- ocean.engine: the engine context every operation runs in — settings,
-- the event loop, the Port client — one per Lua state (so one per nginx
-- worker), built from ocean.config settings or from a table.
--
--   engine.init(opts) -> ctx | nil, err
--     opts.settings: settings as ocean.config.load returns them, or
--     opts.path/env/overrides: passed to ocean.config.load
--   engine.get() -> ctx (initialising from the OCEAN__* environment and
--     the current directory when nothing was initialised)
--   engine.close()
--
-- ctx: {settings, loop, port (ocean.port client), core_port, clock(),
--       await(pred [, timeout_ms]), should_abort(run), begin_run, end_run}
local core = require "ocean.core"
local config = require "ocean.config"
local log = require "ocean.log"
local port_mod = require "ocean.port"
local runtime = require "ocean.runtime"

local _M = {}

local current

local function clock()
  local ngx = _G.ngx
  if type(ngx) == "table" and ngx.now then
    if ngx.update_time then ngx.update_time() end
    return ngx.now()
  end
  return core.now()
end
_M.clock = clock

-- Build a context from settings (ocean.config's shape).
function _M.new(settings)
  local ok, perr = config.require_port(settings)
  if not ok then return nil, perr end
  for _, s in ipairs(settings.secrets or {}) do log.add_secret(s) end
  log.add_secret(settings.port.client_secret)
  if settings.log_level then log.set_level(settings.log_level) end
  local loop = core.loop_new { concurrency = settings.port.concurrency }
  local good, client = pcall(port_mod.new, {
    loop = loop,
    base_url = settings.port.base_url,
    client_id = settings.port.client_id,
    client_secret = settings.port.client_secret,
    integration_type = settings.integration.type,
    integration_identifier = settings.integration.identifier,
    integration_version = settings.integration.version,
    verify_tls = settings.port.verify_tls,
    bulk_max_entities = settings.upsert_batch_max_length,
    bulk_max_bytes = settings.upsert_batch_max_bytes,
    delete_batch = math.min(settings.delete_batch_max or 100, 100),
    retry = settings.port.retry,
  })
  if not good then
    loop:close()
    return nil, tostring(client)
  end
  local ctx = {
    settings = settings, loop = loop, port = client, core_port = client.core,
    clock = clock, abort_requested = false,
  }
  function ctx.await(pred, timeout_ms)
    return runtime.await(loop, function()
      if pred() then return true end
    end, timeout_ms and { timeout_ms = timeout_ms } or nil)
  end
  function ctx.should_abort(run)
    return ctx.abort_requested and ctx.running == run
  end
  -- ctx.running is the outermost run: an operation started while another
  -- runs (a webhook's ocean.sync during a resync) must not take its place,
  -- or the resync could no longer be aborted.
  function ctx.begin_run(run)
    if ctx.running ~= nil then return end
    ctx.abort_requested = false
    ctx.running = run
  end
  function ctx.end_run(run)
    if ctx.running == run then ctx.running = nil end
  end
  return ctx
end

function _M.init(opts)
  opts = opts or {}
  local settings = opts.settings
  if not settings then
    local err
    settings, err = config.load { path = opts.path, env = opts.env, overrides = opts.overrides }
    if not settings then return nil, err end
  end
  local ctx, err = _M.new(settings)
  if not ctx then return nil, err end
  _M.close()
  current = ctx
  return ctx
end

function _M.get()
  if current then return current end
  local ctx, err = _M.init {}
  if not ctx then
    error("ocean is not configured: " .. tostring(err)
      .. " (call ocean.init{...} or set the OCEAN__* variables)", 3)
  end
  return ctx
end

function _M.current()
  return current
end

function _M.close()
  if current then
    pcall(function() current.port:close() end)
    pcall(function() current.loop:close() end)
    current = nil
  end
end

return _M
