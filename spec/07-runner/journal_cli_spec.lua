-- `ocean journal`: the operator's tool for the live-event journals, run as
-- the command against real journal files (ocean.journal), and against a
-- real `ocean sail` (spec/fixtures/live) whose dead letter is requeued and
-- then applied by the next start, in the bundled emulator.
local json = require "ocean.json"
local journal = require "ocean.journal"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local LIVE = ehelp.root() .. "/spec/fixtures/live"
local SECRET = "hush-hush-webhook-secret"
local HEADER_SECRET, BODY_SECRET = "header-secret-5a1f", "body-secret-9c2e"

-- A journal at path with n events to the webhook path /items, the first
-- `dead` of them dead letters (one attempt each, failed with the errors
-- given); the others pending.
local function make(path, n, errors)
  local j = assert(journal.open(path, { max_attempts = 1 }))
  for i = 1, n do
    assert(j:append { path = "/items", headers = { authorization = "Bearer " .. HEADER_SECRET },
                      body = json.encode { item = { id = "e" .. i, token = BODY_SECRET } } })
  end
  local claimed = assert(j:claim(#errors))
  for i, e in ipairs(claimed) do assert.are.equal("dead", j:fail(e.id, errors[i])) end
  j:close()
end

local function run(args, env)
  local a = { "journal" }
  for _, x in ipairs(args) do a[#a + 1] = x end
  return sail.run(a, env or {})
end

local function states(path)
  local j = assert(journal.open(path))
  local out = {}
  for _, e in ipairs(assert(j:dead())) do out[e.id] = "dead" end
  for _, e in ipairs(assert(j:pending())) do out[e.id] = "pending" end
  j:close()
  return out
end

describe("ocean journal", function()
  local dir
  before_each(function() dir = ehelp.tmpdir() end)
  after_each(function()
    sail.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  it("prints its usage with --help, and in ocean help", function()
    local r = run { "--help" }
    assert.are.equal(0, r.rc)
    assert.are.equal("usage: ocean journal [PATH | --dir DIR] [--file NAME] [--list]\n",
      r.out:match("^[^\n]*\n"))
    for _, opt in ipairs { "--requeue ID...", "--requeue-all", "--drop ID...", "--file NAME",
                           "Headers and bodies are never printed" } do
      assert.truthy(r.out:find(opt, 1, true), opt)
    end
    r = sail.run({ "help" }, {})
    assert.truthy(r.out:find("\n  journal [PATH]", 1, true), r.out)
  end)

  local bad = {
    { { "--bogus" }, "unknown option --bogus" },
    { { "--requeue" }, "--requeue needs event IDs (numbers)" },
    { { "--drop", "x" }, "--drop needs event IDs (numbers)" },
    { { "--list", "--requeue-all" }, "--list and --requeue-all do not go together" },
    { { "--requeue", "1", "--drop", "2" }, "--requeue and --drop do not go together" },
    { { "--dir" }, "--dir needs a value" },
    { { "a", "b" }, "unexpected argument b: PATH is already a" },
    -- with --dir, a word taken as PATH was silently ignored
    { { "--dir", "/x", "extra" }, "unexpected argument extra: with --dir DIR there is no PATH" },
    { { "extra", "--dir", "/x" }, "unexpected argument extra: with --dir DIR there is no PATH" },
    { { "--dir", "/x", "--drop", "1", "two" }, "unexpected argument two: with --dir DIR there is no PATH" },
    { { "--requeue", "99999999999999999999" }, "event ID 99999999999999999999 is out of range" },
    { { "--drop", "1", "9007199254740993" }, "event ID 9007199254740993 is out of range" },
  }
  for _, c in ipairs(bad) do
    it("exits 2 on " .. table.concat(c[1], " "), function()
      local r = run(c[1])
      assert.are.same({ 2, "", "ocean journal: " .. c[2] .. "\nsee ocean journal --help\n" },
        { r.rc, r.out, r.err })
    end)
  end

  it("lists pending events and dead letters without headers or bodies", function()
    local path = dir .. "/spec-live.sqlite3"
    make(path, 3, { "Port answered 500 internal_error:\nplease retry", "handle_event failed" })
    local r = run { "--dir", dir }
    assert.are.equal(0, r.rc, r.err)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal("journal " .. path .. ": 1 pending, 2 dead letter(s)", lines[1])
    assert.matches("^  ID%s+STATE%s+ATTEMPTS%s+RECEIVED%s+PATH%s+LAST ERROR$", lines[2])
    assert.matches("^  1%s+dead%s+1  %d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ  /items%s+"
      .. "Port answered 500 internal_error: please retry$", lines[3])
    assert.matches("^  2%s+dead%s+1  %S+  /items%s+handle_event failed$", lines[4])
    assert.matches("^  3%s+pending%s+0  %S+  /items%s+%-$", lines[5])
    assert.are.equal(5, #lines)
    assert.is_nil(r.out:find(HEADER_SECRET, 1, true))
    assert.is_nil(r.out:find(BODY_SECRET, 1, true))
    assert.is_nil(r.out:find("Bearer", 1, true))
  end)

  it("requeues and drops dead letters by ID, and says which IDs are not dead letters (1)", function()
    local path = dir .. "/spec-live.sqlite3"
    make(path, 4, { "a", "b", "c" })
    local r = run { "--dir", dir, "--requeue", "1", "3" }
    assert.are.same({ 0, "requeued event 1 (/items, 1 attempt(s)) in " .. path .. "\n"
      .. "requeued event 3 (/items, 1 attempt(s)) in " .. path .. "\n", "" }, { r.rc, r.out, r.err })
    assert.are.same({ "pending", "dead", "pending", "pending" }, states(path))
    r = run { "--dir", dir, "--drop", "2", "4", "9" }
    assert.are.equal(1, r.rc)
    assert.are.equal("dropped event 2 (/items, 1 attempt(s)) in " .. path .. "\n", r.out)
    assert.are.equal("ocean journal: event 4 is not a dead letter in " .. path .. "\n"
      .. "ocean journal: event 9 is not a dead letter in " .. path .. "\n", r.err)
    assert.are.same({ [1] = "pending", [3] = "pending", [4] = "pending" }, states(path))
  end)

  it("requeues every dead letter with --requeue-all, across the journals of nginx's workers", function()
    local a, b = dir .. "/spec-live-101.sqlite3", dir .. "/spec-live-202.sqlite3"
    make(a, 2, { "x", "y" })
    make(b, 2, { "z" })
    local r = run { "--dir", dir, "--requeue-all" }
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(3, select(2, r.out:gsub("requeued event", "")), r.out)
    assert.are.same({ "pending", "pending" }, states(a))
    assert.are.same({ "pending", "pending" }, states(b))
    r = run { "--dir", dir, "--requeue-all" }
    assert.are.same({ 0, "no dead letter to requeue\n" }, { r.rc, r.out })
  end)

  it("refuses an ID that is a dead letter in two journals until --file names one", function()
    local a, b = dir .. "/spec-live-101.sqlite3", dir .. "/spec-live-202.sqlite3"
    make(a, 1, { "x" })
    make(b, 1, { "y" })
    local r = run { "--dir", dir, "--requeue", "1" }
    assert.are.same({ 1, "", "ocean journal: event 1 is a dead letter in 2 journals (" .. a .. ", " .. b
      .. "): name one with --file\n" }, { r.rc, r.out, r.err })
    assert.are.same({ "dead" }, states(a))
    r = run { "--dir", dir, "--file", "spec-live-202", "--requeue", "1" }
    assert.are.same({ 0, "requeued event 1 (/items, 1 attempt(s)) in " .. b .. "\n" }, { r.rc, r.out })
    assert.are.same({ "dead" }, states(a))
    assert.are.same({ "pending" }, states(b))
  end)

  it("leaves a journal a running process holds alone, saying so, at once (1)", function()
    local path = dir .. "/spec-live.sqlite3"
    make(path, 1, { "x" })
    local held = assert(journal.open(path))         -- as a running ocean sail holds it
    for _, args in ipairs { { "--dir", dir }, { "--dir", dir, "--requeue", "1" },
                            { "--dir", dir, "--drop", "1" } } do
      local r = run(args)
      assert.are.equal(1, r.rc)
      assert.truthy(r.err:find("ocean journal: journal " .. path .. " is in use by a running process "
        .. "(ocean sail, or an nginx worker that adopted it): left alone; stop that process first\n",
        1, true), r.err)
    end
    held:close()
    assert.are.same({ "dead" }, states(path))
  end)

  it("says when there is no journal, and fails on IDs then", function()
    local r = run { "--dir", dir }
    assert.are.same({ 0, "no live-event journal in " .. dir .. "\n", "" }, { r.rc, r.out, r.err })
    r = run { "--dir", dir, "--requeue-all" }
    assert.are.same({ 0, "no live-event journal in " .. dir .. "\n", "" }, { r.rc, r.out, r.err })
    r = run { "--dir", dir, "--requeue", "1" }
    assert.are.same({ 1, "ocean journal: no live-event journal in " .. dir .. "\n" }, { r.rc, r.err })
    r = run { "--dir", dir, "--file", "nope" }
    assert.are.same({ 1, "ocean journal: no journal " .. dir .. "/nope.sqlite3\n" }, { r.rc, r.err })
    assert.are.equal("", ehelp.sh("ls -A " .. ehelp.shell_quote(dir)))
  end)

  it("fails when --dir names no folder, or a file (1)", function()
    for _, args in ipairs { { "--dir", dir .. "/none" }, { "--dir", dir .. "/none", "--requeue-all" } } do
      local r = run(args)
      assert.are.same({ 1, "", "ocean journal: --dir " .. dir .. "/none: no such folder\n" }, { r.rc, r.out, r.err })
    end
    local f = assert(io.open(dir .. "/file", "w"))
    f:close()
    local r = run { "--dir", dir .. "/file" }
    assert.are.same({ 1, "", "ocean journal: --dir " .. dir .. "/file is not a folder\n" }, { r.rc, r.out, r.err })
    assert.are.equal("file\n", ehelp.sh("ls -A " .. ehelp.shell_quote(dir)))
  end)

  it("never creates a journal, nor turns a file that is not one into a journal (1)", function()
    local empty, text = dir .. "/empty.sqlite3", dir .. "/text.sqlite3"
    local f = assert(io.open(empty, "w"))
    f:close()
    f = assert(io.open(text, "w"))
    f:write(("not a journal\n"):rep(100))
    f:close()
    local not_journal = "ocean journal: journal " .. empty .. " is not a lua-ocean journal (an empty file or"
      .. " database): left as it is\n"
    for _, args in ipairs { { "--dir", dir, "--file", "empty" }, { "--dir", dir, "--file", empty },
                            { "--dir", dir, "--file", "empty", "--requeue", "1" },
                            { "--dir", dir, "--file", "empty", "--drop", "1" },
                            { "--dir", dir, "--file", "empty", "--requeue-all" } } do
      local r = run(args)
      assert.are.equal(1, r.rc, table.concat(args, " "))
      assert.truthy(r.err:find(not_journal, 1, true), r.err)
    end
    -- every *.sqlite3 of the folder: each that is not a journal is named
    local r = run { "--dir", dir }
    assert.are.same({ 1, "" }, { r.rc, r.out })
    assert.truthy(r.err:find(not_journal, 1, true), r.err)
    assert.truthy(r.err:find("ocean journal: journal " .. text .. " is not a SQLite database (or is corrupt)", 1, true),
      r.err)
    -- a path that is not there is not made, nor its folder
    r = run { "--dir", dir, "--file", dir .. "/sub/j.sqlite3" }
    assert.are.same({ 1, "ocean journal: no journal " .. dir .. "/sub/j.sqlite3\n" }, { r.rc, r.err })
    assert.are.equal("empty.sqlite3\ntext.sqlite3\n", ehelp.sh("ls -A " .. ehelp.shell_quote(dir)))
    assert.are.equal("0\n", ehelp.sh("stat -c %s " .. ehelp.shell_quote(empty)))
  end)

  it("lists without writing: a claimed event stays claimed, the file unchanged", function()
    local path = dir .. "/spec-live.sqlite3"
    make(path, 2, {})
    local j = assert(journal.open(path))
    assert.are.equal(1, #assert(j:claim(1)))      -- as a process killed mid-apply leaves it
    j:close()
    local before = ehelp.read_file(path)
    local r = run { "--dir", dir }
    assert.are.equal(0, r.rc, r.err)
    assert.matches("\n  1%s+claimed%s+1  ", r.out)
    assert.matches("\n  2%s+pending%s+0  ", r.out)
    assert.are.equal(before, ehelp.read_file(path))
    assert.are.equal("spec-live.sqlite3\n", ehelp.sh("ls -A " .. ehelp.shell_quote(dir)))
  end)

  it("lists the journal of a process that died without closing it, leaving its WAL as it was", function()
    local path = dir .. "/spec-live.sqlite3"
    -- a process that appends and exits without closing (no checkpoint):
    -- the events are in the WAL only
    local code = ("local j = assert(require('ocean.journal').open(%q)) "
      .. "for i = 1, 3 do assert(j:append { path = '/items' }) end os.exit(0, false)"):format(path)
    assert.are.equal("", ehelp.sh(sail.runtime() .. " -e " .. ehelp.shell_quote(code) .. " 2>&1"))
    local db, wal = ehelp.read_file(path), ehelp.read_file(path .. "-wal")
    assert.truthy(wal and #wal > 0)
    local r = run { "--dir", dir }
    assert.are.same({ 0, "" }, { r.rc, r.err })
    assert.matches("^journal " .. path:gsub("%p", "%%%0") .. ": 3 pending, 0 dead letter%(s%)\n", r.out)
    -- read, not checkpointed into the file: the next writer recovers it
    assert.are.equal(db, ehelp.read_file(path))
    assert.are.equal(wal, ehelp.read_file(path .. "-wal"))
  end)
end)

describe("ocean journal with ocean sail", function()
  local emu, dir
  setup(function()
    emu = ehelp.start { quiet = true }
    dir = ehelp.tmpdir()
  end)
  teardown(function()
    sail.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  local function env()
    return sail.emulator_env(emu, {
      OCEAN__INTEGRATION__IDENTIFIER = "spec-journal",
      OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = SECRET,
      OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
      OCEAN__LIVE_EVENTS__JOURNAL_DIR = dir,
      OCEAN__LIVE_EVENTS__MAX_ATTEMPTS = "1",
      APPLICATION__LOG_LEVEL = "INFO",
    })
  end

  local function start()
    return sail.serve(LIVE, env())
  end

  local function live(p)
    local _, text = p:http("GET", "/integration/health")
    return json.decode(text).live_events
  end

  it("requeues a dead letter of a stopped ocean sail, which the next start applies", function()
    local p = start()
    -- Port refuses the event's upsert (400: not retried): one attempt, dead
    emu.faults { { method = "POST", path = "/entities/bulk$", status = 400,
                   body = { message = "refused on purpose" } } }
    local status = p:http("POST", "/integration/items", {
      body = json.encode { item = { id = "j1", name = "Journaled", size = 1 } },
      headers = { ["X-Secret"] = SECRET } })
    assert.are.equal(200, status)
    sail.eventually(function() return live(p).dead == 1 end, 30, "the dead letter")
    emu.faults()
    -- while it runs, the journal is its own: listed as in use, left alone
    local r = run({ LIVE }, env())
    assert.are.equal(1, r.rc)
    assert.truthy(r.err:find("is in use by a running process", 1, true), r.err)
    assert.are.equal(0, (p:stop()))
    r = run({ LIVE }, env())
    assert.are.equal(0, r.rc, r.err)
    local id = r.out:match("\n  (%d+)%s+dead%s+1  %S+  /items%s+[^\n]*refused on purpose")
    assert.truthy(id, r.out)
    r = run({ LIVE, "--requeue", id }, env())
    assert.are.equal(0, r.rc, r.err)
    -- --once does not apply the journal: it says so, and leaves it pending
    local once = sail.run({ "sail", LIVE, "--once" }, env())
    assert.truthy(once.err:find("1 live event(s) pending in the journal " .. dir
      .. "/spec-journal.sqlite3: --once does not apply them", 1, true), once.err)
    r = run({ LIVE }, env())
    assert.truthy(r.out:find("1 pending, 0 dead letter", 1, true), r.out)
    p = start()
    sail.eventually(function()
      for _, e in ipairs(emu.entities("specItem")) do if e.identifier == "j1" then return true end end
    end, 30, "the requeued event applied")
    assert.are.same({ 0, 0 }, { live(p).dead, live(p).pending })
    local _, _, err = p:stop()
    assert.truthy(err:find("1 event(s) pending from before this start, 0 dead letter(s)", 1, true), err)
    r = run({ LIVE }, env())
    assert.are.same({ 0, "journal " .. dir .. "/spec-journal.sqlite3: 0 pending, 0 dead letter(s)\n" },
      { r.rc, r.out })
  end)
end)
