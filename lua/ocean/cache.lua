-- ocean.cache: memoising for integration authors — a function's result or
-- a generator's pages, kept for one resync (memory) and optionally longer
-- (disk, with a TTL). Ocean's names map to ours:
--
--   Ocean (port_ocean.utils.cache)        lua-ocean
--   @cache_coroutine_result()             c:memoize(fn [, opts])
--   @cache_iterator_result()              c:memoize_pages(generator [, opts])
--   the event's scope (memory provider)   c:begin_resync(id) ... c:end_resync(id)
--   DiskCacheProvider (pickle files)      opts.ttl with cache.new{dir=} (JSON files)
--
--   local cache = require "ocean.cache"
--   local c = cache.new { dir = "/var/cache/my-integration" }   -- dir: only for ttl
--   local fetch_repos = c:memoize_pages(function(org)
--     for page in ocean.http.paginate(api .. "/orgs/" .. org .. "/repos") do
--       coroutine.yield(page)
--     end
--   end, { name = "repos" })
--   ocean.on_resync("repository", function(kind)       -- two resources, one fetch
--     for page in fetch_repos("acme") do coroutine.yield(page) end
--   end)
--   ocean.on_resync_start(function() c:begin_resync() end)
--   ocean.on_resync_complete(function() c:end_resync() end)
--
-- cache.new(opts) -> c. opts: dir (folder for entries with a ttl; created
-- when missing), clock (seconds, default os.time), log (default ocean.log).
-- No module state: each cache object holds its own (the engine will own
-- one and call begin_resync/end_resync around every resync).
--
-- c:memoize(fn, opts) -> wrapper(...): the first result of fn(...) for
-- these arguments, computed once per resync. A nil first result (the
-- `nil, err` convention) and errors are passed through and never kept.
-- c:memoize_pages(gen, opts) -> wrapper(...) -> iterator over pages: gen
-- calls coroutine.yield(page) per page (or returns a list: one page).
-- Pages are kept only once gen finished (an error or a consumer that stops
-- early keeps nothing); a hit replays them without calling gen.
-- opts.name: the key's name (default: the function's source:line, the same
-- across runs); opts.ttl: seconds to keep the result on disk as well (needs
-- dir; values must be JSON: tables, strings, numbers, booleans, ocean.null).
-- The key is the name and the arguments as canonical JSON (functions or
-- userdata among them: not cacheable, fn is called every time).
--
-- Scope: between begin_resync and end_resync every call shares the memory
-- cache (resources run one after another, so the second resource of a
-- kind finds the first one's pages); outside a resync nothing is kept in
-- memory, only disk entries (ttl) are read and written. begin_resync
-- drops whatever a previous (failed, unfinished) resync left.
--
-- Disk (our choice; SQLite has no Debian package for Lua): one file per
-- entry, `<dir>/<name>-<hash>.json`, {key, expires_at, value}, written to a
-- temporary file in dir and renamed over the entry (atomic on POSIX; a
-- reader never sees half a file). The full key is stored and compared, so
-- a hash collision is a miss. A corrupt or expired file is a miss (and is
-- removed); write errors are logged at WARNING and the result still
-- returned. c:clear() removes every entry file.
--
-- c.stats = {hits, misses, disk_hits, disk_writes, errors}
local json = require "ocean.json"

local type, tostring, error, pcall, select = type, tostring, error, pcall, select
local setmetatable = setmetatable
local format = string.format
local unpack = table.unpack or unpack
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status

local _M = {}

local Cache = {}
Cache.__index = Cache

-- {==================== keys ====================

-- Two 32-bit polynomial hashes (exact in doubles on both runtimes) as 16
-- hex digits: a file name, not an identity (the key is compared too).
local function hash(s)
  local a, b = 5381, 0
  for i = 1, #s do
    local c = s:byte(i)
    a = (a * 33 + c) % 4294967291
    b = (b * 65599 + c) % 4294967279
  end
  return format("%08x%08x", a, b)
end
_M.hash = hash

local function default_name(fn)
  local info = debug.getinfo(fn, "S")
  return format("%s:%d", info.short_src, info.linedefined)
end

-- The canonical key of name + arguments, or nil when an argument is not
-- JSON (a function, userdata...).
local function key_of(name, ...)
  local n = select("#", ...)
  local args = json.array {}
  for i = 1, n do
    local v = select(i, ...)
    if v == nil then v = json.null end
    local t = type(v)
    if t == "function" or t == "thread" or (t == "userdata" and v ~= json.null) then return nil end
    args[i] = v
  end
  local ok, text = pcall(json.canonical, args)
  if not ok or not text then return nil end
  return name .. "(" .. text .. ")"
end

local function file_name(name, key)
  return (name:gsub("[^%w_.-]", "_"):sub(1, 80)) .. "-" .. hash(key) .. ".json"
end

-- }====================

-- {==================== disk ====================

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function Cache:disk_get(name, key)
  local path = self.dir .. "/" .. file_name(name, key)
  local text = read_file(path)
  if not text then return nil end
  local entry = json.decode(text)
  if type(entry) ~= "table" or entry.key ~= key or type(entry.expires_at) ~= "number" then
    if type(entry) ~= "table" or type(entry.key) ~= "string" then
      self.log.warning("cache: %s is not a cache entry: removed", path)
      os.remove(path)
    end
    return nil
  end
  if entry.expires_at <= self.clock() then
    os.remove(path)
    return nil
  end
  return entry.value
end

-- Write atomically: a temporary file in the same folder, renamed over the
-- entry. Returns true | nil, err.
function Cache:disk_set(name, key, value, ttl)
  local text, err = json.encode({ key = key, expires_at = self.clock() + ttl, value = value })
  if not text then return nil, "not JSON: " .. tostring(err) end
  local path = self.dir .. "/" .. file_name(name, key)
  self.seq = self.seq + 1
  local tmp = format("%s.%s.%d.tmp", path, tostring(self):match("0x(%x+)") or "0", self.seq)
  local f, ferr = io.open(tmp, "wb")
  if not f then return nil, ferr end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    return nil, werr or cerr
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

-- Remove every entry file (and leftover temporary files) in dir.
function Cache:clear()
  self.memory = self.scope and {} or nil
  if not self.dir then return true end
  local p = io.popen("ls -1 -- '" .. self.dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  if not p then return nil, "cannot list " .. self.dir end
  for f in p:lines() do
    if f:match("%-%x+%.json$") or f:match("%-%x+%.json%..*%.tmp$") then
      os.remove(self.dir .. "/" .. f)
    end
  end
  p:close()
  return true
end

-- }====================

-- {==================== lookup ====================

function Cache:lookup(name, key, ttl)
  if self.memory then
    local v = self.memory[key]
    if v ~= nil then
      self.stats.hits = self.stats.hits + 1
      self.log.debug("cache hit: %s", name)
      return v
    end
  end
  if ttl and self.dir then
    local v = self:disk_get(name, key)
    if v ~= nil then
      self.stats.hits = self.stats.hits + 1
      self.stats.disk_hits = self.stats.disk_hits + 1
      self.log.debug("cache hit (disk): %s", name)
      if self.memory then self.memory[key] = v end
      return v
    end
  end
  self.stats.misses = self.stats.misses + 1
  return nil
end

function Cache:store(name, key, value, ttl)
  if self.memory then self.memory[key] = value end
  if ttl and self.dir then
    local ok, err = self:disk_set(name, key, value, ttl)
    if ok then
      self.stats.disk_writes = self.stats.disk_writes + 1
    else
      self.stats.errors = self.stats.errors + 1
      self.log.warning("cache: %s not kept on disk: %s", name, tostring(err))
    end
  end
end

local function check_opts(fn, opts, what, self)
  if type(fn) ~= "function" then error(what .. ": expected a function", 3) end
  opts = opts or {}
  if opts.ttl ~= nil then
    if type(opts.ttl) ~= "number" or opts.ttl <= 0 then
      error(what .. ": ttl must be a positive number of seconds", 3)
    end
    if not self.dir then error(what .. ": ttl needs cache.new{dir = ...}", 3) end
  end
  if opts.name ~= nil and (type(opts.name) ~= "string" or opts.name == "") then
    error(what .. ": name must be a non-empty string", 3)
  end
  return opts.name or default_name(fn), opts.ttl
end

-- }====================

-- {==================== memoize ====================

-- Ocean's cache_coroutine_result.
function Cache:memoize(fn, opts)
  local name, ttl = check_opts(fn, opts, "cache.memoize", self)
  return function(...)
    local key = (self.memory or ttl) and key_of(name, ...)
    if not key then return fn(...) end
    local v = self:lookup(name, key, ttl)
    if v ~= nil then return v end
    local r = { fn(...) }
    if r[1] ~= nil then self:store(name, key, r[1], ttl) end
    return unpack(r, 1, #r)
  end
end

local function replay(pages)
  local i = 0
  return function()
    i = i + 1
    return pages[i]
  end
end

-- Ocean's cache_iterator_result: an iterator over gen's pages.
function Cache:memoize_pages(gen, opts)
  local name, ttl = check_opts(gen, opts, "cache.memoize_pages", self)
  return function(...)
    local key = (self.memory or ttl) and key_of(name, ...)
    if key then
      local pages = self:lookup(name, key, ttl)
      if pages ~= nil then return replay(pages) end
    end
    local args, nargs = { ... }, select("#", ...)
    local co = co_create(gen)
    local pages, done, started = json.array {}, false, false
    return function()
      if done then return nil end
      local ok, page
      if started then
        ok, page = co_resume(co)
      else
        started = true
        ok, page = co_resume(co, unpack(args, 1, nargs))
      end
      if not ok then
        done = true
        error(debug.traceback(co, tostring(page)), 0)
      end
      if co_status(co) == "dead" then
        done = true
        -- a plain function returning the whole list: one page
        if type(page) == "table" then pages[#pages + 1] = page end
        if key then self:store(name, key, pages, ttl) end
        return type(page) == "table" and page or nil
      end
      pages[#pages + 1] = page
      return page
    end
  end
end

-- }====================

-- {==================== scope ====================

-- A resync starts: a fresh memory cache (whatever was left is dropped).
function Cache:begin_resync(id)
  self.scope = id or true
  self.memory = {}
end

-- The resync ended (completed, failed or aborted): memory entries go.
-- An id that is not the current resync's is ignored (a late call).
function Cache:end_resync(id)
  if id ~= nil and self.scope ~= id then return end
  self.scope, self.memory = nil, nil
end

function Cache:in_resync()
  return self.scope ~= nil
end

-- }====================

function _M.new(opts)
  opts = opts or {}
  local c = setmetatable({
    dir = opts.dir and opts.dir:gsub("/+$", ""),
    clock = opts.clock or os.time,
    log = opts.log or require("ocean.log"),
    seq = 0,
    stats = { hits = 0, misses = 0, disk_hits = 0, disk_writes = 0, errors = 0 },
  }, Cache)
  if c.dir then
    local ok = os.execute("mkdir -p '" .. c.dir:gsub("'", "'\\''") .. "'")
    if ok ~= true and ok ~= 0 then return nil, "cannot create the cache folder " .. c.dir end
  end
  return c
end

return _M
