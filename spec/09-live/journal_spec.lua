-- The live-event journal (ocean.journal: src/live/journal.c on SQLite): append,
-- claim, done, fail and the dead letters, reopening, one handle per file,
-- clear errors for unusable paths and damaged files, and durability: every
-- append acknowledged before a SIGKILL is there after it.
local journal = require "ocean.journal"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local q, read_file, sh = ehelp.shell_quote, ehelp.read_file, ehelp.sh

local function ids_of(list)
  local out = {}
  for i, r in ipairs(list) do out[i] = r.id end
  return out
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

describe("ocean.journal", function()
  local dir, j

  before_each(function() dir = ehelp.tmpdir() end)

  after_each(function()
    if j then j:close() end
    j = nil
    os.execute("rm -rf " .. q(dir))
  end)

  local function open(name, opts)
    local jj, err, code = journal.open(dir .. "/" .. (name or "j.sqlite3"), opts)
    assert(jj, err)
    assert.is_nil(code)
    return jj
  end

  describe("append and claim", function()
    it("keeps path, headers, body and time exactly, and hands events out oldest first", function()
      j = open()
      local body = "\0\1\255 binary {\"a\":1}\r\n" .. ("x"):rep(100000)
      local id1 = assert(j:append { path = "/integration/webhook", body = body,
        headers = { ["content-type"] = "application/json", ["x-hub-signature"] = "sha256=ab",
                    ["x-count"] = 7, ["x-empty"] = "" }, received_at = 1700000000.25 })
      local id2 = assert(j:append { path = "/b" })
      local id3 = assert(j:append { path = "/c", body = "" })
      assert.is_true(id1 >= 1 and id2 > id1 and id3 > id2)
      local got = assert(j:claim(2))
      assert.are.same({ id1, id2 }, ids_of(got))
      assert.are.same({ id = id1, path = "/integration/webhook", body = body,
        headers = { ["content-type"] = "application/json", ["x-hub-signature"] = "sha256=ab",
                    ["x-count"] = "7", ["x-empty"] = "" },
        received_at = 1700000000.25, attempts = 1, claimed = true }, got[1])
      assert.are.same({ {}, "", 1 }, { got[2].headers, got[2].body, got[2].attempts })
      -- claimed events are not handed out again while leased
      assert.are.same({ id3 }, ids_of(assert(j:claim(10))))
      assert.are.same({}, assert(j:claim(10)))
      assert.are.same({}, assert(j:claim(0)))
    end)

    it("appends a batch in one transaction, ids in order", function()
      j = open()
      local first = j:append { path = "/0" }
      local ids = assert(j:append_batch { { path = "/1", body = "a" }, { path = "/2", headers = { h = "v" } },
                                          { path = "/3", received_at = 5 } })
      assert.are.same({ first + 1, first + 2, first + 3 }, ids)
      local list = j:pending()
      assert.are.same({ "/0", "/1", "/2", "/3" }, { list[1].path, list[2].path, list[3].path, list[4].path })
      assert.are.same({ "a", "v", 5 }, { list[2].body, list[3].headers.h, list[4].received_at })
      assert.are.same({}, j:append_batch {})
      assert.are.equal(4, j:stats().appended)
      assert.has_error(function() j:append_batch { { path = "/ok" }, "no" } end,
        "append_batch: record 2 is not a table")
      assert.has_error(function() j:append_batch { { path = "/ok" }, { body = "x" } } end,
        "append: 'path' must be a string")
      assert.are.equal(4, #j:pending())    -- a refused batch wrote nothing
    end)

    it("stamps received_at with the current time when not given", function()
      j = open()
      local before = os.time()
      assert(j:append { path = "/x" })
      local r = assert(j:pending())[1]
      assert.is_true(r.received_at >= before - 1 and r.received_at <= os.time() + 1)
    end)

    it("removes done events, one or many in one call, and says which existed", function()
      j = open()
      local a = j:append { path = "/a" }
      local b = j:append { path = "/b" }
      local c = j:append { path = "/c" }
      assert.is_true(j:done(a))
      assert.is_false(j:done(a))
      assert.are.equal(1, j:done { b, 999999 })
      assert.are.same({ c }, ids_of(assert(j:pending())))
      assert.are.equal(0, j:done {})
    end)

    it("hands a claimed event out again when its lease ends, counting the attempt", function()
      j = open(nil, { lease = 0.2 })
      local id = j:append { path = "/a" }
      assert.are.equal(1, j:claim(1)[1].attempts)
      assert.are.same({}, j:claim(1))
      ehelp.sleep(0.3)
      local again = j:claim(1)
      assert.are.same({ { id, 2 } }, { { again[1].id, again[1].attempts } })
    end)
  end)

  describe("failures and the dead letters", function()
    it("keeps a failed event pending until max_attempts, then dead with its last error", function()
      j = open(nil, { max_attempts = 3 })
      local id = j:append { path = "/a" }
      local keep = j:append { path = "/b" }
      for attempt = 1, 2 do
        local r = j:claim(1)[1]
        assert.are.same({ id, attempt }, { r.id, r.attempts })
        assert.are.equal("pending", j:fail(id, "Port said 503 (" .. attempt .. ")"))
        assert.are.equal("Port said 503 (" .. attempt .. ")", j:pending()[1].last_error)
      end
      assert.are.equal(id, j:claim(1)[1].id)
      assert.are.equal("dead", j:fail(id, "Port said 422"))
      assert.are.same({ keep }, ids_of(j:pending()))
      local dead = j:dead()
      assert.are.same({ { id, 3, "Port said 422", false } },
        { { dead[1].id, dead[1].attempts, dead[1].last_error, dead[1].claimed } })
      assert.are.same({ keep }, ids_of(j:claim(5)))
      local st = j:stats()
      assert.are.same({ 1, 1, 1, 3, 1 }, { st.pending, st.claimed, st.dead, st.failed, st.dead_lettered })
    end)

    it("counts a failure without a claim as an attempt, and knows no unknown or dead event", function()
      j = open(nil, { max_attempts = 2 })
      local id = j:append { path = "/a" }
      assert.are.equal("pending", j:fail(id, "bad signature"))
      assert.are.equal(1, j:pending()[1].attempts)
      assert.are.equal("dead", j:fail(id, "bad signature"))
      assert.is_false(j:fail(id, "again"))
      assert.is_false(j:fail(424242, "nobody"))
    end)

    it("requeues a dead letter with its attempts reset, and finishes one with done", function()
      j = open(nil, { max_attempts = 1 })
      local a = j:append { path = "/a" }
      local b = j:append { path = "/b" }
      j:claim(2)
      assert.are.equal("dead", j:fail(a, "x"))
      assert.are.equal("dead", j:fail(b, "y"))
      assert.is_true(j:requeue(a))
      assert.is_false(j:requeue(a))
      assert.is_false(j:requeue(777))
      local r = j:claim(5)
      assert.are.same({ { a, 1 } }, { { r[1].id, r[1].attempts } })
      assert.is_true(j:done(b))
      assert.are.same({}, j:dead())
    end)

    it("gives claims back unapplied with their attempts taken back, and leaves the others alone", function()
      local path = dir .. "/release.sqlite3"
      for round = 1, 3 do             -- a graceful stop cuts the apply short, three times
        local jj = assert(journal.open(path, { max_attempts = 2 }))
        if round == 1 then
          jj:append { path = "/cut" }
          jj:append { path = "/later" }
        end
        local got = jj:claim(1)
        assert.are.same({ "/cut", 1 }, { got[1].path, got[1].attempts })
        assert.is_true(jj:release(got[1].id))
        assert.is_false(jj:release(got[1].id))           -- no claim left to give back
        assert.are.same({ got[1].id }, ids_of(jj:claim(1)))
        assert.are.equal(1, jj:release { got[1].id, 424242 })
        jj:close()
      end
      j = assert(journal.open(path, { max_attempts = 2 }))
      assert.are.same({}, j:dead())
      local r = j:claim(1)[1]
      assert.are.same({ "/cut", 1 }, { r.path, r.attempts })
      -- a failed attempt stays counted, and a dead letter is not released
      assert.are.equal("pending", j:fail(r.id, "Port said 503"))
      assert.is_false(j:release(r.id))
      assert.are.equal(2, j:claim(1)[1].attempts)
      assert.are.equal("dead", j:fail(r.id, "Port said 503"))
      assert.is_false(j:release(r.id))
      assert.are.equal(1, #j:dead())
    end)

    it("moves an event claimed max_attempts times and never finished to the dead letters", function()
      local path = dir .. "/poison.sqlite3"
      for _ = 1, 2 do                 -- the process dies applying it, twice
        local jj = assert(journal.open(path, { max_attempts = 2 }))
        if #jj:pending() == 0 then jj:append { path = "/poison" } end
        assert.are.equal(1, #jj:claim(1))
        jj:close()                    -- its claim is released at the next open
      end
      j = assert(journal.open(path, { max_attempts = 2 }))
      assert.are.same({}, j:claim(1))
      local dead = j:dead()
      assert.are.equal(1, #dead)
      assert.matches("abandoned: claimed 2 times and never done or failed", dead[1].last_error, 1, true)
    end)
  end)

  describe("listing and counts", function()
    it("lists pending events oldest first with their claims, up to a limit", function()
      j = open()
      local a = j:append { path = "/a" }
      local b = j:append { path = "/b" }
      local c = j:append { path = "/c" }
      j:claim(1)
      local list = j:pending()
      assert.are.same({ a, b, c }, ids_of(list))
      assert.are.same({ true, false, false }, { list[1].claimed, list[2].claimed, list[3].claimed })
      assert.are.same({ a, b }, ids_of(j:pending(2)))
    end)

    it("counts pending, claimed and dead events, the oldest one's age, and this handle's calls", function()
      j = open(nil, { max_attempts = 1 })
      local st = j:stats()
      assert.are.same({ pending = 0, claimed = 0, dead = 0, oldest_age = 0, appended = 0, done = 0,
                        failed = 0, dead_lettered = 0 }, st)
      local old = j:append { path = "/old", received_at = os.time() - 100 }
      j:append { path = "/new" }
      local x = j:append { path = "/x" }
      j:claim(1)
      j:claim(1)
      j:fail(old, "gone")
      j:done(x)
      st = j:stats()
      assert.are.same({ 1, 1, 1, 3, 1, 1, 1 }, { st.pending, st.claimed, st.dead, st.appended,
                                                   st.done, st.failed, st.dead_lettered })
      assert.is_true(st.oldest_age >= 0 and st.oldest_age < 5, "age " .. st.oldest_age)
    end)
  end)

  describe("reopening", function()
    it("finds its events, releases the claims of the previous handle, and never reuses an id", function()
      local path = dir .. "/re.sqlite3"
      local jj = assert(journal.open(path))
      local a = jj:append { path = "/a", headers = { h = "1" }, body = "A" }
      local b = jj:append { path = "/b" }
      jj:claim(1)
      assert.is_true(jj:done(b))            -- the newest is gone
      jj:close()
      jj:close()                            -- idempotent
      assert.has_error(function() jj:append { path = "/x" } end, "attempt to use a closed journal")
      j = assert(journal.open(path))
      local r = j:claim(5)
      assert.are.same({ { a, "/a", "A", "1", 2 } },
        { { r[1].id, r[1].path, r[1].body, r[1].headers.h, r[1].attempts } })
      assert.is_true(j:append { path = "/c" } > b)
    end)

    it("is held by one handle: a second open is refused as busy until the first closes", function()
      j = open("one.sqlite3")
      local again, err, code = journal.open(dir .. "/one.sqlite3")
      assert.is_nil(again)
      assert.are.equal("busy", code)
      assert.are.equal("journal " .. dir .. "/one.sqlite3 is in use by another process or handle"
        .. " (reading it: database is locked)", err)
      j:close()
      j = open("one.sqlite3")
    end)

    it("is closed by the garbage collector and by a to-be-closed variable", function()
      local path = dir .. "/gc.sqlite3"
      do
        local jj = assert(journal.open(path))
        jj:append { path = "/a" }
        jj = nil -- luacheck: ignore 311
      end
      collectgarbage()
      collectgarbage()
      j = assert(journal.open(path))
      assert.are.equal(1, #j:pending())
      assert.matches("^ocean.Journal %(.*gc.sqlite3%)$", tostring(j))
      assert.are.equal(path, j:path())
    end)
  end)

  describe("shared (nginx's workers)", function()
    local core = require "ocean.core"
    local others = {}
    after_each(function()
      for _, o in ipairs(others) do o:close() end
      others = {}
    end)
    local function shared(name, opts)
      local o = { shared = true }
      for k, v in pairs(opts or {}) do o[k] = v end
      local jj, err = journal.open(dir .. "/" .. name, o)
      assert(jj, err)
      others[#others + 1] = jj
      return jj
    end

    it("takes appends from several handles, in one order of ids, and leaves claims alone at open", function()
      local a = shared("s.sqlite3")
      local b = shared("s.sqlite3")
      local ids = {}
      for i = 1, 10 do ids[#ids + 1] = assert((i % 2 == 0 and a or b):append { path = "/e" .. i }) end
      for i = 2, 10 do assert.is_true(ids[i] > ids[i - 1]) end
      assert.are.same({ 10, 10 }, { a:stats().pending, b:stats().pending })
      local got = assert(a:claim(3))
      assert.are.same({ ids[1], ids[2], ids[3] }, ids_of(got))
      -- a third handle's open releases nothing: the claims are a's
      local c = shared("s.sqlite3")
      assert.are.same({ ids[4] }, ids_of(assert(c:claim(1))))
      assert.are.equal(4, c:stats().claimed)
      -- until the claimer is gone: its successor releases every claim
      assert.are.equal(4, c:release_all())
      assert.are.same({ 10, 0 }, { c:stats().pending, c:stats().claimed })
      local again = assert(c:claim(10))
      assert.are.equal(ids[1], again[1].id)
      assert.are.equal(2, again[1].attempts)     -- the released claim stays counted
    end)

    it("keeps the latest writers: a seq only grows, read back since, pruned before", function()
      local a = shared("m.sqlite3")
      assert.is_true(a:mark { "user\0ann", 2000, "user\0bob", 1000 })
      assert.is_true(a:mark { "user\0ann", 1500, "user\0bob", 3000 })   -- ann keeps 2000
      local got = assert(a:marks(0))
      local m = {}
      for i = 1, #got, 2 do m[got[i]] = got[i + 1] end
      assert.are.same({ ["user\0ann"] = 2000, ["user\0bob"] = 3000 }, m)
      assert.are.same({ "user\0bob", 3000 }, assert(a:marks(2500)))
      assert.are.equal(1, a:prune_marks(2500))
      assert.are.same({ "user\0bob", 3000 }, assert(a:marks(0)))
      assert.is_true(a:mark {})
      assert.has_error(function() a:mark { "k", "x" } end, "mark: expected {key, seq, ...}, item 1 is not")
      -- kept across a reopen
      a:close()
      j = open("m.sqlite3")
      assert.are.same({ "user\0bob", 3000 }, assert(j:marks(0)))
    end)

    it("says, by its version, when another handle committed (not its own commits)", function()
      local a = shared("v.sqlite3")
      local b = shared("v.sqlite3")
      local v0 = assert(b:version())
      assert(b:append { path = "/own" })
      assert.are.equal(v0, b:version())
      assert(a:append { path = "/other" })
      local v1 = b:version()
      assert.are_not.equal(v0, v1)
      assert(a:requeue(1) ~= nil)                -- a write that changes nothing: no commit
      a:done { (assert(a:claim(1))[1].id) }
      assert.are_not.equal(v1, b:version())
    end)

    it("and an exclusive handle refuse each other; a shared reader reads beside the writers", function()
      local a = shared("x.sqlite3")
      assert(a:append { path = "/a" })
      local e, err, code = journal.open(dir .. "/x.sqlite3")
      assert.are.same({ "busy" }, { code }, err)
      assert.is_nil(e)
      e, err, code = journal.open(dir .. "/x.sqlite3", { read_only = true })
      assert.are.same({ "busy" }, { code }, err)
      assert.is_nil(e)
      local r = shared("x.sqlite3", { read_only = true })
      assert.are.same({ "/a" }, { assert(r:pending())[1].path })
      assert.is_nil(r:append { path = "/no" })
      a:close()
      r:close()
      -- ocean sail's way: exclusive; a shared open waits busy_ms, then is refused
      j = open("x.sqlite3")
      local s
      s, err, code = journal.open(dir .. "/x.sqlite3", { shared = true, busy_ms = 50 })
      assert.is_nil(s)
      assert.are.equal("busy", code)
      assert.matches("x.sqlite3 is in use by another process or handle", err, 1, true)
      assert.has_error(function() journal.open(dir .. "/y.sqlite3", { shared = true, busy_ms = 0 }) end,
        "journal_open: 'busy_ms' must be an integer in 1..600000")
    end)

    it("has a consumer's lock: one holder, given up by unlock and by the holder's death", function()
      local path = dir .. "/c-consumer.lock"
      local fd = assert(core.journal_lock(path))
      assert.are.equal(false, core.journal_lock(path))       -- another open file: refused
      assert.are.equal("600", sh("stat -c %a " .. q(path)):match("%d+"))
      core.journal_unlock(fd)
      fd = assert(core.journal_lock(path))
      core.journal_unlock(fd)
      local none, err = core.journal_lock(dir .. "/no/such/folder/x.lock")
      assert.is_nil(none)
      assert.matches("lock file " .. dir .. "/no/such/folder/x.lock cannot be opened: ", err, 1, true)
      -- a child holds it, and is SIGKILLed: the kernel gives it back
      local child, ready = dir .. "/hold.lua", dir .. "/ready"
      write(child, ([[
local core = require "ocean.core"
assert(core.journal_lock(%q))
io.open(%q, "w"):close()
while true do end
]]):format(path, ready))
      local pid = tonumber(sh(("%s %s >/dev/null 2>&1 & echo $!"):format(sail.runtime(), q(child))))
      local held = false
      for _ = 1, 100 do
        if read_file(ready) then held = true break end
        sh("sleep 0.05")
      end
      assert.is_true(held, "the child never took the lock")
      assert.are.equal(false, core.journal_lock(path))
      sh("kill -KILL " .. pid .. "; sleep 0.2")
      fd = assert(core.journal_lock(path))
      core.journal_unlock(fd)
    end)

    it("takes every append of two processes appending at once, none lost, ids unique", function()
      local child = dir .. "/app.lua"
      write(child, [[
local journal = require "ocean.journal"
local j = assert(journal.open(arg[1], { shared = true }))
for i = 1, 300 do
  if i % 3 == 0 then
    assert(j:append_batch { { path = "/" .. arg[2] .. "/" .. i }, { path = "/" .. arg[2] .. "/" .. i .. "b" } })
  else
    assert(j:append { path = "/" .. arg[2] .. "/" .. i })
  end
end
j:close()
]])
      local path = dir .. "/two.sqlite3"
      local rt = sail.runtime()
      local out = sh(("%s %s %s p & %s %s %s q & wait; echo done"):format(rt, q(child), q(path), rt,
        q(child), q(path)))
      assert.matches("done", out)
      j = open("two.sqlite3")
      local all = assert(j:pending())
      assert.are.equal(800, #all)
      local seen = {}
      for _, r in ipairs(all) do
        assert.is_nil(seen[r.path], r.path)
        seen[r.path] = true
      end
    end)
  end)

  describe("errors", function()
    it("says a garbage file is not a journal database", function()
      write(dir .. "/garbage", ("not sqlite "):rep(1000))
      local jj, err, code = journal.open(dir .. "/garbage")
      assert.is_nil(jj)
      assert.are.same({ "corrupt", "journal " .. dir .. "/garbage is not a SQLite database (or is corrupt)"
        .. " (reading it: file is not a database)" }, { code, err })
    end)

    it("finds damaged pages at open, names the file and says what to do", function()
      local path = dir .. "/hurt.sqlite3"
      local jj = assert(journal.open(path))
      for _ = 1, 200 do jj:append { path = "/x", body = ("b"):rep(500) } end
      jj:close()
      local f = assert(io.open(path, "r+b"))
      local size = f:seek("end")
      for off = 4096 * 3, size - 1, 4096 do
        f:seek("set", off + 100)
        f:write(("\255"):rep(300))
      end
      f:close()
      local err, code
      jj, err, code = journal.open(path)
      assert.is_nil(jj)
      assert.are.equal("corrupt", code)
      assert.matches("^journal " .. dir:gsub("%p", "%%%0") .. "/hurt.sqlite3 is corrupt %(quick_check: .+%);"
        .. " move it aside to start a new one$", err)
      -- without the check, the damage shows where it is read
      j = assert(journal.open(path, { check = false }))
      local none, lerr = j:pending()
      assert.is_nil(none)
      assert.matches("is corrupt (listing: database disk image is malformed)", lerr, 1, true)
    end)

    it("refuses to write into a SQLite database that is not a journal, or a newer one", function()
      local other = dir .. "/other.db"
      assert.are.equal("", sh("sqlite3 " .. q(other) .. " 'CREATE TABLE t(x); INSERT INTO t VALUES (1);' 2>&1"))
      local jj, err, code = journal.open(other)
      assert.is_nil(jj)
      assert.are.same({ "not_journal", "journal " .. other .. " is a SQLite database but not a lua-ocean"
        .. " journal (application_id 0): refusing to write into it" }, { code, err })
      assert.are.equal("1\n", sh("sqlite3 " .. q(other) .. " 'SELECT x FROM t' 2>&1"))
      local newer = dir .. "/newer.sqlite3"
      journal.open(newer):close()
      sh("sqlite3 " .. q(newer) .. " 'PRAGMA user_version = 9' 2>&1")
      jj, err = journal.open(newer)
      assert.is_nil(jj)
      assert.are.equal("journal " .. newer .. " was written by a newer lua-ocean (schema 9; this one reads 1)",
        err)
    end)

    it("says why a path cannot be a journal: its folder is a file, it is a folder, it cannot be created", function()
      write(dir .. "/file", "x")
      local jj, err, code = journal.open(dir .. "/file/sub/j.sqlite3")
      assert.is_nil(jj)
      assert.are.same({ "access", "journal " .. dir .. "/file/sub/j.sqlite3 cannot be created: cannot create"
        .. " its folder " .. dir .. "/file/sub: Not a directory" }, { code, err })
      jj, err, code = journal.open(dir)
      assert.is_nil(jj)
      assert.are.equal("access", code)
      assert.matches("^journal " .. dir:gsub("%p", "%%%0") .. " cannot be opened %(opening it: unable to open"
        .. " database file: Is a directory%)$", err)
      jj, err, code = journal.open("/proc/self/journal.sqlite3")
      assert.is_nil(jj)
      assert.are.equal("access", code)
      assert.matches("^journal /proc/self/journal.sqlite3 cannot be opened", err)
    end)

    it("says what failed and only the OS error that belongs to it: a path longer than SQLite takes", function()
      -- the folders exist: creating them left errno at EEXIST, which SQLite
      -- reported as its own OS error ("File exists") for a failure that
      -- had none
      local deep = dir .. "/" .. ("d"):rep(200) .. "/" .. ("e"):rep(200) .. "/" .. ("f"):rep(200)
      assert.are.equal("", sh("mkdir -p " .. q(deep) .. " 2>&1"))
      local path = deep .. "/j.sqlite3"
      local jj, err, code = journal.open(path)
      assert.is_nil(jj)
      assert.are.same({ "access", "journal " .. path .. " cannot be opened (opening it: its path is " .. #path
        .. " bytes, longer than the 512 SQLite takes)" }, { code, err })
    end)

    it("refuses a read-only file at open, saying so (not a stray OS error at its lock)", function()
      local path = dir .. "/ro.sqlite3"
      journal.open(path):close()
      if sh("chattr +i " .. q(path) .. " 2>/dev/null && echo ok") ~= "ok\n" then
        -- chattr needs root and a file system that has it; as root, chmod
        -- does not stop a write: nothing else makes a file read-only here
        pending("chattr +i is not available here")
        return
      end
      local jj, err, code = journal.open(path)
      sh("chattr -i " .. q(path))
      assert.is_nil(jj)
      assert.are.same({ "access", "journal " .. path .. " cannot be opened for writing (opening it: SQLite could"
        .. " open the file only read-only)" }, { code, err })
    end)

    it("with existing or read_only, opens only a journal that is there: creates nothing, changes no other file",
      function()
      local other = dir .. "/other.db"
      assert.are.equal("", sh("sqlite3 " .. q(other) .. " 'CREATE TABLE t(x);' 2>&1"))
      write(dir .. "/empty.sqlite3", "")
      for _, opts in ipairs { { existing = true }, { read_only = true } } do
        local jj, err, code = journal.open(dir .. "/new/j.sqlite3", opts)
        assert.is_nil(jj)
        assert.are.same({ "access", "journal " .. dir .. "/new/j.sqlite3 cannot be opened (opening it: unable"
          .. " to open database file: No such file or directory)" }, { code, err })
        jj, err, code = journal.open(dir .. "/empty.sqlite3", opts)
        assert.is_nil(jj)
        assert.are.same({ "not_journal", "journal " .. dir .. "/empty.sqlite3 is not a lua-ocean journal (an"
          .. " empty file or database): left as it is" }, { code, err })
        jj, err, code = journal.open(other, opts)
        assert.is_nil(jj)
        assert.are.equal("not_journal", code, err)
        assert.are.equal("empty.sqlite3\nother.db\n", sh("ls " .. q(dir)))
        assert.are.equal("0\n", sh("stat -c %s " .. q(dir .. "/empty.sqlite3")))
      end
      -- without them, an empty file is where a new journal starts
      j = open("empty.sqlite3")
      assert.is_truthy(j:append { path = "/x" })
    end)

    it("with read_only, writes nothing: claims are kept, the writing calls fail, the file is unchanged", function()
      local path = dir .. "/j.sqlite3"
      local jj = open("j.sqlite3", { max_attempts = 1 })
      jj:append { path = "/a" }
      jj:append { path = "/b" }
      assert.are.equal(1, #jj:claim(1))
      jj:close()
      local before = read_file(path)
      j = open("j.sqlite3", { read_only = true })
      local pend = assert(j:pending())
      assert.are.same({ true, false }, { pend[1].claimed, pend[2].claimed })
      local none, err = j:append { path = "/c" }
      assert.is_nil(none)
      assert.are.equal("journal " .. path .. " is read-only (appending: attempt to write a readonly database)",
        err)
      assert.is_nil((j:done(2)))
      assert.is_nil((j:requeue(1)))
      -- still locked: a journal held by another handle is busy, as for a writer
      local other, _, code = journal.open(path, { read_only = true })
      assert.is_nil(other)
      assert.are.equal("busy", code)
      j:close()
      j = nil
      assert.are.equal(before, read_file(path))
      assert.are.equal("j.sqlite3\n", sh("ls " .. q(dir)))
    end)

    it("creates missing folders", function()
      j = open("a/b/c/j.sqlite3")
      assert.is_truthy(j:append { path = "/x" })
    end)

    it("raises on misuse, naming the argument", function()
      j = open()
      for _, case in ipairs {
        { function() j:append() end, "bad argument #1 to 'append' (table expected, got no value)" },
        { function() j:append { body = "x" } end, "append: 'path' must be a string" },
        { function() j:append { path = "/x", body = 5 } end, "append: 'body' must be a string" },
        { function() j:append { path = "/x", headers = "h" } end, "append: 'headers' must be a table" },
        { function() j:append { path = "/x", headers = { true } } end,
          "append: header names must be strings" },
        { function() j:append { path = "/x", headers = { h = {} } } end,
          "append: header values must be strings or numbers" },
        { function() j:append { path = "/x", headers = { h = "a\0b" } } end,
          "append: a header value contains a NUL byte" },
        { function() j:append { path = "/x", received_at = "now" } end,
          "append: 'received_at' must be a number (seconds)" },
        { function() j:done("x") end, "bad argument #1 to 'done' (number expected, got string)" },
        { function() j:done(0) end, "bad argument #1 to 'done' (event id expected)" },
        { function() j:claim(-1) end, "bad argument #1 to 'claim' (a count in 0..1000000 expected)" },
        { function() j:fail(1) end, "bad argument #2 to 'fail' (string expected, got no value)" },
        { function() journal.open("") end, "journal_open: the path is empty" },
        { function() journal.open(dir .. "/x", { max_attempts = 0 }) end,
          "journal_open: 'max_attempts' must be an integer in 1..1000000" },
        { function() journal.open(dir .. "/x", { lease = 0 }) end,
          "journal_open: 'lease' must be a number of seconds above 0" },
      } do
        local ok, err = pcall(case[1])
        assert.is_false(ok)
        assert.matches(case[2], err, 1, true)
      end
    end)
  end)

  describe("its place", function()
    -- it keeps the senders' headers (tokens) and bodies: never readable by
    -- other users, whatever the umask or the folder's mode
    it("is a new file readable by its owner only, as is its -wal", function()
      os.execute("chmod 755 " .. q(dir))
      j = open("private.sqlite3")
      assert(j:append { path = "/w", body = "{}", headers = { ["x-secret"] = "s" } })
      -- (no -shm: the journal's exclusive locking keeps the WAL index in memory)
      local f = io.popen("cd " .. q(dir) .. " && stat -c '%n %a' private.sqlite3*")
      local modes = f:read("*a")
      f:close()
      assert.are.equal("private.sqlite3 600\nprivate.sqlite3-wal 600\n", modes)
    end)

    it("is OCEAN__LIVE_EVENTS__JOURNAL_DIR, else the integration folder's .ocean/journal", function()
      local s = { integration = { identifier = "my gh/int" } }
      assert.are.equal("/it/.ocean/journal/my_gh_int.sqlite3", journal.path(s, { folder = "/it" }))
      s.live_events = { journal_dir = "/var/lib/ocean" }
      assert.are.equal("/var/lib/ocean/my_gh_int-w3.sqlite3",
        journal.path(s, { folder = "/it", suffix = "w3" }))
      local none, err = journal.path({ integration = { identifier = "x" } })
      assert.is_nil(none)
      assert.are.equal("no folder for the live-event journal: set OCEAN__LIVE_EVENTS__JOURNAL_DIR", err)
      local settings = assert(require("ocean.config").load {
        path = ehelp.root() .. "/spec/fixtures/items",
        env = { OCEAN__PORT__CLIENT_ID = "i", OCEAN__PORT__CLIENT_SECRET = "s",
                OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = "/dev/null",
                OCEAN__LIVE_EVENTS__JOURNAL_DIR = "/data/journal" } })
      assert.are.equal("/data/journal", settings.live_events.journal_dir)
    end)
  end)

  describe("durability", function()
    -- The syncs a child makes, counted by an LD_PRELOAD shim between
    -- markers the child writes into the shim's log.
    local SYNC_CHILD = [[
local journal = require "ocean.journal"
local log = os.getenv("SYNCCOUNT_LOG")
local function mark(m) local f = io.open(log, "a") f:write(m, "\n") f:close() end
local j = assert(journal.open(arg[1]))
mark("appends")
for i = 1, 5 do assert(j:append { path = "/e", body = ("b"):rep(i * 100) }) end
mark("claims")
local got = assert(j:claim(5))
assert(j:done { got[1].id, got[2].id })
assert(j:fail(got[3].id, "later"))
assert(j:requeue(got[3].id) == false)
mark("append")
assert(j:append { path = "/again" })
mark("batch")
local batch = {}
for i = 1, 10 do batch[i] = { path = "/b" .. i } end
assert(#assert(j:append_batch(batch)) == 10)
mark("end")
j:close()
]]

    it("waits for the disk at each append, once for a batch, and not for claims, done or fail", function()
      local shim, child, log = dir .. "/synccount.so", dir .. "/sync.lua", dir .. "/syncs"
      local out = sh(("env -u LD_PRELOAD cc -O2 -shared -fPIC -o %s %s -ldl 2>&1; echo rc=$?")
        :format(q(shim), q(ehelp.root() .. "/spec/helpers/synccount.c")))
      assert(out:match("rc=0"), out)
      write(child, SYNC_CHILD)
      -- the shim after whatever the suite preloads (a sanitizer comes first)
      out = sh(("SHIM=%s; SYNCCOUNT_LOG=%s LD_PRELOAD=\"${LD_PRELOAD:+$LD_PRELOAD }$SHIM\" %s %s %s 2>&1;"
        .. " echo rc=$?")
        :format(q(shim), q(log), sail.runtime(), q(child), q(dir .. "/synced.sqlite3")))
      assert(out:match("rc=0%s*$"), out)
      local counts, phase = {}, "open"
      for line in read_file(log):gmatch("[^\n]+") do
        if line:match("^f%a*sync %d+$") then
          counts[phase] = (counts[phase] or 0) + 1
        else
          phase = line
        end
      end
      -- open syncs the folder once (and the new WAL); close checkpoints
      assert.is_true((counts.open or 0) >= 1)
      assert.are.same({ 5, 0, 1, 1 }, { counts.appends, counts.claims or 0, counts.append, counts.batch })
    end)


    -- A child appends events and acknowledges each (a line in a file,
    -- written after append returned); it is SIGKILLed at a random moment
    -- (seeded); every acknowledged event must be in the journal after.
    local CHILD = [[
local journal = require "ocean.journal"
local path, ackpath, run = arg[1], arg[2], arg[3]
local j = assert(journal.open(path))
local ack = assert(io.open(ackpath, "a"))
for i = 1, 1e9 do
  local id = assert(j:append { path = "/hook/" .. run, headers = { ["x-run"] = run, ["x-seq"] = i },
                              body = ("run %s event %d "):format(run, i) .. ("x"):rep(i % 300) })
  ack:write(run, " ", i, " ", id, "\n")
  ack:flush()
end
]]

    it("keeps every acknowledged append across SIGKILL at random points (40 runs, seed 11)", function()
      local child = dir .. "/child.lua"
      write(child, CHILD)
      local path = dir .. "/durable.sqlite3"
      local rt = sail.runtime()
      math.randomseed(11)
      local total, last_id = 0, 0
      for run = 1, 40 do
        local ackpath = dir .. "/acks" .. run
        write(ackpath, "")
        local delay = math.random(0, 150) / 1000
        sh(("%s %s %s %s %d > /dev/null 2>&1 & pid=$!; sleep %.3f; kill -9 $pid; wait $pid 2>/dev/null")
          :format(rt, q(child), q(path), q(ackpath), run, delay))
        -- the journal opens at once (the dead child's lock is gone) and
        -- holds every event acknowledged, intact; at most one more (the
        -- append that returned just before the kill, unacknowledged)
        local jj, err = journal.open(path)
        assert(jj, err)
        local by_id, n, acked = {}, 0, 0
        for _, r in ipairs(assert(jj:pending())) do
          by_id[r.id] = r
          n = n + 1
          assert(r.id > last_id, "an id was reused")
        end
        for line in (read_file(ackpath) or ""):gmatch("[^\n]+") do
          local r, i, id = line:match("^(%d+) (%d+) (%d+)$")
          i = tonumber(i)
          local ev = by_id[tonumber(id)]
          if not ev then
            error(("run %s: acknowledged event %d (id %s) is missing"):format(r, i, id))
          end
          local body = ("run %s event %d "):format(r, i) .. ("x"):rep(i % 300)
          if ev.path ~= "/hook/" .. r or ev.headers["x-run"] ~= r or ev.headers["x-seq"] ~= tostring(i)
             or ev.body ~= body then
            error(("run %s: event %d (id %s) came back different"):format(r, i, id))
          end
          acked = acked + 1
        end
        assert(n == acked or n == acked + 1,
          ("run %d: %d events for %d acknowledged"):format(run, n, acked))
        -- done with them: the next run checks its own, after its own kill
        local ids = {}
        for id in pairs(by_id) do
          ids[#ids + 1] = id
          if id > last_id then last_id = id end
        end
        assert.are.equal(n, jj:done(ids))
        jj:close()
        total = total + acked
      end
      -- most kills landed while the child was appending
      assert.is_true(total > 100, "only " .. total .. " acknowledged appends in 40 runs")
    end)
  end)
end)
