-- ocean.journal: the durable journal of live events (src/live/journal.c on
-- SQLite; the API is in src/lua/ljournal.c). An event is appended before
-- its sender gets a 2xx and is on disk when append returns; it leaves the
-- journal when done. docs/live-events.md says why it is built this way.
--
--   local journal = require "ocean.journal"
--   local j = assert(journal.open(journal.path(settings, { folder = dir })))
--   local id = assert(j:append{ path = req.path, headers = req.headers,
--                               body = req.body })
--   for _, ev in ipairs(assert(j:claim(20))) do
--     local ok, err = apply(ev)
--     if ok then j:done(ev.id) else j:fail(ev.id, err) end
--   end
--   j:close()
--
-- journal.open(path [, {max_attempts=5, lease=300, existing=false,
-- read_only=false}]) -> j | nil, err, code (code: "busy" when another
-- process or handle has it open, "corrupt", "not_journal", "access",
-- "other"). The journal and its folders are created when missing, unless
-- existing: then only a journal that is there opens (a missing file is
-- "access", an empty file or another database "not_journal", and nothing
-- is created). read_only: existing, and nothing is written (the writing
-- calls fail; claims are kept). One handle per journal file: the file is
-- locked while open.
local core = require "ocean.core"

local type = type

local _M = {}

_M.open = core.journal_open

-- The journals' folder: settings.live_events.journal_dir
-- (OCEAN__LIVE_EVENTS__JOURNAL_DIR), else FOLDER/.ocean/journal for an
-- integration folder. nil, err when there is neither.
function _M.dir(settings, folder)
  local le = type(settings) == "table" and settings.live_events
  local dir = type(le) == "table" and le.journal_dir
  if dir and dir ~= "" then return dir end
  if folder and folder ~= "" then return folder .. "/.ocean/journal" end
  return nil, "no folder for the live-event journal: set OCEAN__LIVE_EVENTS__JOURNAL_DIR"
end

-- The journal file of one consumer: DIR/<identifier>[-<suffix>].sqlite3,
-- the identifier kept to letters, digits, '.', '_' and '-' (suffix: e.g.
-- a worker's, when several processes each have their own). opts.folder:
-- the integration folder. nil, err as dir.
function _M.path(settings, opts)
  opts = opts or {}
  local dir, err = _M.dir(settings, opts.folder)
  if not dir then return nil, err end
  local integ = type(settings) == "table" and settings.integration
  local name = type(integ) == "table" and integ.identifier or "integration"
  name = name:gsub("[^%w._-]", "_")
  if opts.suffix then name = name .. "-" .. opts.suffix end
  return dir .. "/" .. name .. ".sqlite3"
end

return _M
