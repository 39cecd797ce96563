-- ocean: the public API of lua-ocean, named as in Port's Ocean. Every
-- function runs on the default engine (ocean.engine), the one piece of
-- state this facade keeps; ocean.engine() gives it, and
-- require("ocean.engine").new() makes others.
--
--   ocean.init{...}                     configure (settings, or config.load options)
--   ocean.on_resync([kind,] fn)         fn(kind, resource) returns a list, or
--                                        yields pages; resource: the mapping's
--                                        resource config (ocean.event too)
--   ocean.selector_schema(kind, fields)  declare kind's custom selector
--                                        fields (ocean.selector), checked
--                                        whenever a resync reads the mapping
--   ocean.event                          the running resource's event:
--                                        resource_config, kind, resync_id...
--   ocean.on_start(fn), ocean.on_resync_start(fn), ocean.on_resync_complete(fn)
--   ocean.cache_iterator_result(gen [, {name=, ttl=}])  Ocean's decorators on the
--   ocean.cache_coroutine_result(fn [, {name=, ttl=}])  engine's cache (ocean.cache),
--                                        scoped to each resync
--   ocean.add_cache(c)                   scope an ocean.cache object of one's own
--   ocean.sync_raw_all([{plan=}])       full resync -> summary
--   ocean.update_raw_diff(kind, {before=, after=} [, opts])
--   ocean.register_raw(kind, raw [, opts]), ocean.unregister_raw(kind, raw [, opts])
--   ocean.update_diff({before=, after=} [, opts]), ocean.register(entities [, opts]),
--   ocean.unregister(entities [, opts]), ocean.sync(entities [, opts])
--   ocean.parse_items(resource, items [, opts])
--   ocean.gather(fns [, {concurrency=, return_errors=}]) -> results [, errors]
--   ocean.map(items, fn [, {concurrency=, return_errors=}]) -> results [, errors]
--                                        run work concurrently, bounded
--                                        (ocean.gather's header: errors,
--                                        cancellation)
--   ocean.sleep(seconds)                 wait without holding anyone up
--   ocean.router.post/get/put/delete(path, fn)
--   ocean.add_webhook_processor(path, processor)   Ocean's live-events model
--                                        (ocean.webhook: answered at once,
--                                        journaled, applied in the
--                                        background with retries)
--   ocean.retryable(message), ocean.is_retryable(err)   errors a processor's
--                                        handle_event may be retried for
--   ocean.hmac(algorithm, key, message [, encoding]) -> string   HMAC on
--                                        OpenSSL: "sha256", "sha1", "sha384",
--                                        "sha512"; "hex" (default), "base64",
--                                        "raw" (Python's hmac.new(...).hexdigest())
--   ocean.secure_compare(a, b) -> bool   constant-time string equality
--                                        (hmac.compare_digest): for signatures
--   ocean.http, ocean.json, ocean.null, ocean.log, ocean.port (client constructor)
--   ocean.integration_config             the integration's own settings
--   ocean.reset()                        a new default engine (no
--                                        registrations, routes or caches),
--                                        with the same settings
local json = require "ocean.json"
local log = require "ocean.log"
local engine = require "ocean.engine"
local webhook = require "ocean.webhook"
local core = require "ocean.core"

local _M = {
  _VERSION = core.version,
  json = json,
  null = json.null,
  log = log,
  retryable = webhook.retryable,
  is_retryable = webhook.is_retryable,
  -- webhook signatures (src/lua/lcrypto.c: errors, encodings)
  hmac = core.hmac,
  secure_compare = core.secure_compare,
  integration_config = {},
}

local default = engine.new()

function _M.engine()
  return default
end

-- ocean.event: Ocean's event context, read through the default engine.
-- While a resource's resync functions run (and whatever they call:
-- generators, helpers, ocean.cache), ocean.event.resource_config is that
-- resource as written in the mapping (resource_config.selector holds its
-- custom selector fields), with .kind, .resource_index, .resync_id,
-- .port_app_config and .type = "resync"; outside one, every field is nil.
_M.event = setmetatable({}, {
  __index = function(_, k)
    local ev = default:event()
    return ev and ev[k]
  end,
  __newindex = function() error("ocean.event is read-only", 2) end,
})

-- ocean.router is the default engine's; ocean.http and ocean.port are
-- modules loaded on first use.
local lazy = { http = "ocean.http", port = "ocean.port" }
setmetatable(_M, { __index = function(t, k)
  if k == "router" then return default.router end
  local name = lazy[k]
  if name then
    local m = require(name)
    rawset(t, k, m)
    return m
  end
end })

-- {==================== configuration ====================

function _M.init(opts)
  local eng, err = default:configure(opts)
  if not eng then return nil, err end
  _M.integration_config = eng.settings.integration.config or {}
  return eng
end

-- The default engine, configured (from the OCEAN__* environment if
-- nothing configured it yet).
function _M.context()
  return default:ensure_configured(1)
end

-- Forget every registration (tests, reloading an integration): a new
-- default engine, configured like the old one, which is closed.
function _M.reset()
  local old = default
  default = engine.new()
  if old:configured() then assert(default:configure { settings = old.settings }) end
  old:close()
end

-- }====================

-- {==================== registration and operations ====================

function _M.on_resync(kind, fn) return default:on_resync(kind, fn) end
function _M.selector_schema(kind, fields) return default:selector_schema(kind, fields) end
function _M.on_start(fn) return default:on_start(fn) end
function _M.on_resync_start(fn) return default:on_resync_start(fn) end
function _M.on_resync_complete(fn) return default:on_resync_complete(fn) end
function _M.add_webhook_processor(path, processor)
  return default:add_webhook_processor(path, processor)
end

function _M.parse_items(resource, items, opts)
  return default:parse_items(resource, items, opts)
end

function _M.gather(fns, opts) return default:gather(fns, opts) end
function _M.map(items, fn, opts) return default:map(items, fn, opts) end
function _M.sleep(seconds) return default:sleep(seconds) end
-- Ocean's caching decorators, on the default engine's cache: memory
-- entries last one resync (the engine begins and ends their scope).
function _M.cache_iterator_result(gen, opts) return default:cache():memoize_pages(gen, opts) end
function _M.cache_coroutine_result(fn, opts) return default:cache():memoize(fn, opts) end
function _M.add_cache(c) return default:add_cache(c) end

function _M.sync_raw_all(opts) return default:sync_raw_all(opts) end
function _M.register_raw(kind, raw, opts) return default:register_raw(kind, raw, opts) end
function _M.unregister_raw(kind, raw, opts) return default:unregister_raw(kind, raw, opts) end
function _M.update_raw_diff(kind, diff, opts) return default:update_raw_diff(kind, diff, opts) end
function _M.update_diff(diff, opts) return default:update_diff(diff, opts) end
function _M.register(entities, opts) return default:register(entities, opts) end
function _M.unregister(entities, opts) return default:unregister(entities, opts) end
function _M.sync(entities, opts) return default:sync(entities, opts) end

-- }====================

return _M
