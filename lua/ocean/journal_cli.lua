-- ocean.journal_cli: the `ocean journal` command, the operator's tool for
-- the live-event journals (ocean.journal): list their events and dead
-- letters, requeue dead letters, drop them.
--
--   ocean journal [PATH | --dir DIR] [--file NAME] [--list]
--   ocean journal [PATH | --dir DIR] [--file NAME] --requeue ID... | --requeue-all
--                 | --drop ID...
--
-- The journals: every <identifier>.sqlite3 (ocean sail's, or nginx's
-- workers' shared one) and <identifier>-<pid>.sqlite3 (a worker's of an
-- older lua-ocean, or one a worker adopted)
-- in the folder ocean sail uses for PATH's integration
-- (OCEAN__LIVE_EVENTS__JOURNAL_DIR, else PATH/.ocean/journal; the
-- settings are read as ocean sail reads them), or every *.sqlite3 in
-- --dir. ocean sail's journal is locked while it runs (EXCLUSIVE
-- locking, journal.h): the command opens each for a moment and says so
-- when one is in use, never waiting for it. nginx's workers share theirs:
-- the command reads and writes it beside them (journal.h's shared mode),
-- and their consumer applies a requeued event at once. It never creates a journal
-- nor writes into a file that is not one already (journal.open's
-- existing): listing opens read-only (read_only), and only --requeue and
-- --drop write, into the journals that hold the events named.
--
-- _M.main(args) -> exit status: 0 done, 1 a failure (a journal in use,
-- unreadable or not a journal, a --dir folder that does not exist, an
-- event that is not there), 2 a usage error.
local config = require "ocean.config"
local core = require "ocean.core"
local journal = require "ocean.journal"
local log = require "ocean.log"

local ipairs, tostring, tonumber, floor = ipairs, tostring, tonumber, math.floor
local format, concat = string.format, table.concat

local _M = {}

local USAGE = [[
usage: ocean journal [PATH | --dir DIR] [--file NAME] [--list]
       ocean journal [PATH | --dir DIR] [--file NAME]
                     --requeue ID... | --requeue-all | --drop ID...

The live-event journals of the integration in PATH (default: the current
directory): the webhook events ocean sail and nginx's workers have
acknowledged and not applied yet, and the dead letters (events that
failed OCEAN__LIVE_EVENTS__MAX_ATTEMPTS times).

  --list             (the default) each journal's pending events and dead
                     letters, oldest first: ID, state, attempts, when it
                     was received (UTC), the webhook's path, the last error.
                     Headers and bodies are never printed (they may hold
                     secrets); secrets in errors are masked
  --requeue ID...    make these dead letters pending again, attempts reset
  --requeue-all      the same for every dead letter
  --drop ID...       delete these dead letters (they are never applied)
  --dir DIR          the journals' folder (default: ocean sail's, from
                     OCEAN__LIVE_EVENTS__JOURNAL_DIR or PATH/.ocean/journal;
                     with --dir, every *.sqlite3 journal in DIR, which
                     must exist; no PATH then: its settings are not read)
  --file NAME        only this journal: a file name in the folder (the
                     .sqlite3 may be left out) or a path. IDs are per
                     journal: name it when an ID is in several

A requeued event is applied as it is, through the code running then, and
after what came since: its writes carry its old receive time, so an entity
a newer event wrote in the last 24 hours (the journal keeps each entity's
latest writer that long) is left as that one wrote it (superseded, said
in the event's log line); older than that, an old upsert requeued after a
newer delete brings the entity back with its old data (a resync
reconciles it; a WEBHOOKS_ONLY listener never does).

A requeued event is applied by the next `ocean sail` start; in nginx,
whose workers share one journal (<identifier>.sqlite3), at once: this
command reads and writes it beside them. A per-worker journal of an older
lua-ocean (<identifier>-<pid>.sqlite3) is adopted by the workers, which
look again every 5 minutes into those that held only dead letters.
ocean sail's journal is locked while it runs: it is said so, and left
alone (stop ocean sail first; its health answer counts its dead letters
under live_events).

It never creates a journal or writes into a file that is not one: a
file that is not a lua-ocean journal (an empty one too) is an error, and
left as it is; listing only reads.

Exit status: 0 done (also: no journal in the folder, or ocean sail's
folder not made yet, for a listing or --requeue-all); 1 a journal in use,
unreadable or not a journal, a --dir folder that does not exist, no
journal for --requeue/--drop, or an ID that is not a dead letter there;
2 usage error (an unknown option, a word where none is expected).
]]

-- {==================== arguments ====================

local function parse_args(args)
  local o = { ids = {} }
  local i = 1
  local function value(name)
    i = i + 1
    if args[i] == nil or args[i]:sub(1, 1) == "-" and args[i] ~= "-" then
      return nil, name .. " needs a value"
    end
    return args[i]
  end
  local function action(name)
    if o.action and o.action ~= name then
      return nil, o.action .. " and " .. name .. " do not go together"
    end
    o.action = name
    return true
  end
  while i <= #args do
    local a = args[i]
    local ok, err = true, nil
    if a == "--help" or a == "-h" then
      o.help = true
    elseif a == "--dir" or a == "--file" then
      local v, verr = value(a)
      if not v then return nil, verr end
      o[a:sub(3)] = v
    elseif a == "--list" or a == "--requeue-all" then
      ok, err = action(a)
    elseif a == "--requeue" or a == "--drop" then
      ok, err = action(a)
      while ok and args[i + 1] and args[i + 1]:match("^%d+$") do
        i = i + 1
        -- journal ids are SQLite rowids counted from 1; beyond 2^53 a
        -- number is not exact on LuaJIT: refused on both runtimes
        local digits = args[i]:gsub("^0+", "")      -- compared as text: exact on both
        if #digits > 16 or (#digits == 16 and digits > "9007199254740992") then
          return nil, "event ID " .. args[i] .. " is out of range"
        end
        o.ids[#o.ids + 1] = floor(tonumber(args[i]))
      end
      if ok and #o.ids == 0 then return nil, a .. " needs event IDs (numbers)" end
    elseif a:sub(1, 1) == "-" then
      return nil, "unknown option " .. a
    elseif o.path then
      return nil, format("unexpected argument %s: PATH is already %s", a, o.path)
    else
      o.path = a
    end
    if not ok then return nil, err end
    i = i + 1
  end
  if o.dir and o.path then
    -- with --dir, PATH's settings are not read: a word taken as PATH
    -- would be ignored
    return nil, format("unexpected argument %s: with --dir DIR there is no PATH", o.path)
  end
  o.action = o.action or "--list"
  o.path = o.path or "."
  return o
end

-- }====================

-- {==================== the journals ====================

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

-- Whether folder p is there: "p/." opens only when p is a folder.
local function is_folder(p)
  return exists(p .. "/.")
end

-- The journal files to act on: {path, ...} sorted, or nil, err.
local function find(o)
  local dir, base = o.dir, nil
  if dir and not is_folder(dir) then
    return nil, (exists(dir) and "--dir %s is not a folder" or "--dir %s: no such folder"):format(dir)
  end
  if not dir then
    local settings, err = config.load { path = o.path }
    if not settings then return nil, err .. " (or name the journals' folder with --dir)" end
    -- what the running process masked is masked here too (errors kept
    -- before the journal masked them, by an older lua-ocean)
    for _, v in ipairs(settings.secrets or {}) do log.add_secret(v) end
    if settings.port and settings.port.client_secret then log.add_secret(settings.port.client_secret) end
    local derr
    dir, derr = journal.dir(settings, o.path)
    if not dir then return nil, derr end
    base = journal.path(settings, { folder = o.path }):match("([^/]*)%.sqlite3$")
  end
  if o.file then
    local p = o.file
    if not p:find("/", 1, true) then
      p = dir .. "/" .. (p:match("%.sqlite3$") and p or p .. ".sqlite3")
    end
    if not exists(p) then return nil, "no journal " .. p end
    return { p }, nil, dir
  end
  local names, err = core.journal_files(dir)
  if not names then return nil, err end
  local out = {}
  for _, name in ipairs(names) do
    local stem = name:match("^(.*)%.sqlite3$")
    if not base or stem == base or (stem:sub(1, #base + 1) == base .. "-"
                                    and stem:sub(#base + 2):match("^%d+$")) then
      out[#out + 1] = dir .. "/" .. name
    end
  end
  table.sort(out)
  return out, nil, dir
end

-- Open one journal for a moment, only one that exists and is a journal,
-- read-only unless write: j | nil, message.
local function open(path, write)
  local j, err, code = journal.open(path, write and { existing = true } or { read_only = true })
  if j then return j end
  if code == "busy" then
    -- nginx's workers share theirs (NORMAL locking): read and written
    -- beside them, their consumer seeing a requeue at once; ocean sail's
    -- (EXCLUSIVE) stays busy
    j, err, code = journal.open(path, write and { existing = true, shared = true, busy_ms = 200 }
                                  or { read_only = true, shared = true, busy_ms = 200 })
    if j then return j end
  end
  if code == "busy" then
    return nil, format("journal %s is in use by a running process (ocean sail, or an nginx "
      .. "worker that adopted it): left alone; stop that process first", path)
  end
  return nil, tostring(err)
end

-- }====================

-- {==================== actions ====================

local function when(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end

local function one_line(s)
  return (log.mask(tostring(s)):gsub("[\r\n\t]+", " "))
end

local function list_one(out, path)
  local j, err = open(path)
  if not j then return nil, err end
  local dead, derr = j:dead()
  local pending, perr = j:pending()
  j:close()
  if not dead or not pending then return nil, tostring(derr or perr) end
  out:write(format("journal %s: %d pending, %d dead letter(s)\n", path, #pending, #dead))
  if #dead + #pending == 0 then return true end
  out:write(format("  %-8s %-8s %8s  %-20s  %-24s %s\n", "ID", "STATE", "ATTEMPTS", "RECEIVED",
    "PATH", "LAST ERROR"))
  local rows = {}
  for _, e in ipairs(dead) do rows[#rows + 1] = { e, "dead" } end
  for _, e in ipairs(pending) do rows[#rows + 1] = { e, e.claimed and "claimed" or "pending" } end
  table.sort(rows, function(a, b) return a[1].id < b[1].id end)
  for _, r in ipairs(rows) do
    local e = r[1]
    out:write(format("  %-8d %-8s %8d  %-20s  %-24s %s\n", e.id, r[2], e.attempts,
      when(e.received_at), one_line(e.path), e.last_error and one_line(e.last_error) or "-"))
  end
  return true
end

-- Every journal's dead letters: {path = {id = record}}, the paths that
-- opened, and the messages of those that did not.
local function dead_letters(paths)
  local by, opened, failed = {}, {}, {}
  for _, p in ipairs(paths) do
    local j, err = open(p)
    local list
    if j then
      list, err = j:dead()
      j:close()
    end
    if list then
      local m = {}
      for _, e in ipairs(list) do m[e.id] = e end
      by[p] = m
      opened[#opened + 1] = p
    else
      failed[#failed + 1] = err
    end
  end
  return by, opened, failed
end

-- Apply op ("requeue" or "done") to the dead letters picked: {path =
-- {record...}}. Writes a line per event; returns the number of failures.
local function apply(out, err_out, picked, verb)
  local failures = 0
  local paths = {}
  for p in pairs(picked) do paths[#paths + 1] = p end
  table.sort(paths)
  for _, p in ipairs(paths) do
    local j, err = open(p, true)
    if not j then
      err_out:write("ocean journal: ", err, "\n")
      failures = failures + #picked[p]
    else
      for _, e in ipairs(picked[p]) do
        local ok, oerr
        if verb == "requeued" then ok, oerr = j:requeue(e.id) else ok, oerr = j:done(e.id) end
        if ok then
          out:write(format("%s event %d (%s, %d attempt(s)) in %s\n", verb, e.id, one_line(e.path),
            e.attempts, p))
        else
          failures = failures + 1
          err_out:write(format("ocean journal: event %d in %s: %s\n", e.id, p,
            oerr and one_line(oerr) or "no longer a dead letter"))
        end
      end
      j:close()
    end
  end
  return failures
end

-- --requeue/--drop IDs: each must be a dead letter of exactly one journal.
local function pick_ids(err_out, ids, by, opened)
  local picked, failures = {}, 0
  for _, id in ipairs(ids) do
    local where = {}
    for _, p in ipairs(opened) do
      if by[p][id] then where[#where + 1] = p end
    end
    if #where == 1 then
      local l = picked[where[1]] or {}
      l[#l + 1] = by[where[1]][id]
      picked[where[1]] = l
    else
      failures = failures + 1
      if #where == 0 then
        err_out:write(format("ocean journal: event %d is not a dead letter in %s\n", id,
          #opened > 0 and concat(opened, ", ") or "any journal that could be opened"))
      else
        err_out:write(format("ocean journal: event %d is a dead letter in %d journals (%s): "
          .. "name one with --file\n", id, #where, concat(where, ", ")))
      end
    end
  end
  return picked, failures
end

-- }====================

function _M.main(args)
  local o, perr = parse_args(args)
  if not o then
    io.stderr:write("ocean journal: ", perr, "\nsee ocean journal --help\n")
    return 2
  end
  if o.help then
    io.stdout:write(USAGE)
    return 0
  end
  local paths, err, dir = find(o)
  if not paths then
    io.stderr:write("ocean journal: ", log.mask(tostring(err)), "\n")
    return 1
  end
  if #paths == 0 then
    if o.action == "--requeue" or o.action == "--drop" then
      io.stderr:write("ocean journal: no live-event journal in ", dir, "\n")
      return 1
    end
    io.stdout:write("no live-event journal in ", dir, "\n")
    return 0
  end
  local failures = 0
  if o.action == "--list" then
    for _, p in ipairs(paths) do
      local ok, lerr = list_one(io.stdout, p)
      if not ok then
        io.stderr:write("ocean journal: ", lerr, "\n")
        failures = failures + 1
      end
    end
    return failures > 0 and 1 or 0
  end
  local by, opened, failed = dead_letters(paths)
  for _, m in ipairs(failed) do io.stderr:write("ocean journal: ", m, "\n") end
  local picked
  if o.action == "--requeue-all" then
    picked = {}
    for _, p in ipairs(opened) do
      local l = {}
      for _, e in pairs(by[p]) do l[#l + 1] = e end
      table.sort(l, function(a, b) return a.id < b.id end)
      if #l > 0 then picked[p] = l end
    end
    if next(picked) == nil then io.stdout:write("no dead letter to requeue\n") end
  else
    local n
    picked, n = pick_ids(io.stderr, o.ids, by, opened)
    failures = failures + n
  end
  failures = failures + apply(io.stdout, io.stderr, picked,
    o.action == "--drop" and "dropped" or "requeued")
  if o.action == "--requeue-all" then failures = failures + #failed end
  return failures > 0 and 1 or 0
end

return _M
