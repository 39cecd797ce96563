-- ocean: the public API of lua-ocean, named as in Port's Ocean.
--
--   ocean.init{...}                     configure (settings, or config.load options)
--   ocean.on_resync([kind,] fn)         fn(kind) returns a list, or yields pages
--   ocean.on_start(fn), ocean.on_resync_start(fn), ocean.on_resync_complete(fn)
--   ocean.sync_raw_all([{plan=}])       full resync -> summary
--   ocean.update_raw_diff(kind, {before=, after=} [, opts])
--   ocean.register_raw(kind, raw [, opts]), ocean.unregister_raw(kind, raw [, opts])
--   ocean.update_diff({before=, after=} [, opts]), ocean.register(entities [, opts]),
--   ocean.unregister(entities [, opts]), ocean.sync(entities [, opts])
--   ocean.parse_items(resource, items [, opts])
--   ocean.router.post/get/put/delete(path, fn)
--   ocean.http, ocean.json, ocean.null, ocean.log, ocean.port (client constructor)
--   ocean.integration_config             the integration's own settings
local json = require "ocean.json"
local log = require "ocean.log"
local engine = require "ocean.engine"
local sync = require "ocean.sync"
local ops = require "ocean.ops"
local mapping = require "ocean.mapping"

local type, error = type, error

local _M = {
  _VERSION = require("ocean.core").version,
  json = json,
  null = json.null,
  log = log,
  parse_items = mapping.parse_items,
  integration_config = {},
}

-- Modules loaded on first use (ocean.http, ocean.router, ocean.port).
local lazy = { http = "ocean.http", router = "ocean.router", port = "ocean.port" }
setmetatable(_M, { __index = function(t, k)
  local name = lazy[k]
  if name then
    local m = require(name)
    rawset(t, k, m)
    return m
  end
end })

-- {==================== configuration ====================

function _M.init(opts)
  local ctx, err = engine.init(opts)
  if not ctx then return nil, err end
  _M.integration_config = ctx.settings.integration.config or {}
  return ctx
end

function _M.context()
  return engine.get()
end

-- }====================

-- {==================== registration ====================

local function check_fn(fn, what)
  if type(fn) ~= "function" then
    error(what .. ": expected a function, got " .. type(fn), 3)
  end
end

function _M.on_resync(kind, fn)
  if fn == nil and type(kind) == "function" then
    table.insert(sync.registry.all, kind)
    return kind
  end
  if type(kind) ~= "string" or kind == "" then
    error("on_resync: expected a kind (string) and a function", 2)
  end
  check_fn(fn, "on_resync")
  local list = sync.registry.kinds[kind] or {}
  list[#list + 1] = fn
  sync.registry.kinds[kind] = list
  return fn
end

local function hook(name)
  return function(fn)
    check_fn(fn, name)
    table.insert(sync.registry[name], fn)
    return fn
  end
end
_M.on_start = hook("on_start")
_M.on_resync_start = hook("on_resync_start")
_M.on_resync_complete = hook("on_resync_complete")

-- Forget every registration (tests, reloading an integration).
function _M.reset()
  sync.reset_registry()
  local r = rawget(_M, "router")
  if r and r.reset then r.reset() end
end

-- }====================

-- {==================== operations ====================

function _M.sync_raw_all(opts)
  return sync.sync_raw_all(engine.get(), opts)
end

function _M.register_raw(kind, raw, opts)
  return ops.register_raw(engine.get(), kind, raw, opts)
end

function _M.unregister_raw(kind, raw, opts)
  return ops.unregister_raw(engine.get(), kind, raw, opts)
end

function _M.update_raw_diff(kind, diff, opts)
  return ops.update_raw_diff(engine.get(), kind, diff, opts)
end

function _M.update_diff(diff, opts)
  return ops.update_diff(engine.get(), diff, opts)
end

function _M.register(entities, opts)
  return ops.register(engine.get(), entities, opts)
end

function _M.unregister(entities, opts)
  return ops.unregister(engine.get(), entities, opts)
end

function _M.sync(entities, opts)
  return ops.sync(engine.get(), entities, opts)
end

-- }====================

return _M
