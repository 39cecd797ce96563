-- port.itemsToParse: one raw item becomes one entity input per element of
-- an array, with the element under .item (reference §3.7), for every way
-- items are supplied (Ocean only expands generator output).
local H = dofile("spec/02-mapping/helper.lua")
local mapping = require "ocean.mapping"
local parse, null = H.parse, H.null

local function res(items_expr, fields, port)
  local p = { itemsToParse = items_expr }
  for k, v in pairs(port or {}) do p[k] = v end
  local m = { identifier = ".item.name", blueprint = '"file"' }
  for k, v in pairs(fields or {}) do m[k] = v end
  return H.resource(m, { port = p })
end

local repo = { repo = "r1", files = { { name = "a" }, { name = "b" } },
               meta = { owner = "o", big = { 1, 2, 3 } } }

describe("itemsToParse", function()
  it("makes one entity per element, with the parent's fields beside it", function()
    local r = parse(res(".files", { properties = { repo = ".repo", owner = ".meta.owner" } }),
                    { repo })
    assert.are.same({
      { identifier = "a", blueprint = "file", properties = { repo = "r1", owner = "o" } },
      { identifier = "b", blueprint = "file", properties = { repo = "r1", owner = "o" } },
    }, r.passed)
  end)

  it("deletes the expression's leading path from the parent copy", function()
    local cases = {
      { ".files", ".files", null },
      { "(.files)", ".files", null },
      { ".files | map(.)", ".files | length", 0 },
      { ".files // []", ".files", null },
      { '.["files"]', ".files", null },
      { ".meta.big | map({name: tostring})", ".meta", { owner = "o" } },
      { '.meta["big"] | map({name: tostring})', ".meta.big", null },
      { '."meta".big | map({name: tostring})', ".meta.owner", "o" },
      { "( .files | map(.) )", ".files", null },
    }
    for _, case in ipairs(cases) do
      local r = parse(res(case[1], { properties = { seen = case[2] } }), { repo })
      assert.is_true(#r.passed >= 2, case[1])
      assert.are.same(case[3], r.passed[1].properties.seen, case[1])
    end
  end)

  it("keeps the parent whole without the top-level transform", function()
    local r = parse(res(".files", { properties = { n = ".files | length" } },
                        { itemsToParseTopLevelTransform = false }), { repo })
    assert.are.equal(2, r.passed[1].properties.n)
  end)

  it("keeps the parent (does not skip it) when no path can be deleted", function()
    -- Ocean deletes `.` here and skips the parent entirely
    local r = parse(res('to_entries | map({name: .key})', { properties = { repo = ".repo" } }),
                    { { repo = "r1", x = 1 } })
    local ids = { r.passed[1].identifier, r.passed[2].identifier }
    table.sort(ids)
    assert.are.same({ "repo", "x" }, ids)
    assert.are.equal("r1", r.passed[1].properties.repo)
  end)

  it("handles Ocean's cursor-style expression", function()
    local r = parse(res("(.model_breakdown // {} | to_entries)", {
      identifier = '.userEmail + "-" + .date + "-" + .item.key',
      properties = { messages = ".item.value.messages", all = ".model_breakdown" },
    }), { { userEmail = "u@x", date = "d1", model_breakdown = {
      gpt = { messages = 3 } } } })
    assert.are.same({ identifier = "u@x-d1-gpt", blueprint = "file",
                      properties = { messages = 3, all = null } }, r.passed[1])
  end)

  it("uses itemsToParseName", function()
    local r = parse(res(".files", { identifier = ".file.name" },
                        { itemsToParseName = "file" }), { repo })
    assert.are.equal("a", r.passed[1].identifier)
  end)

  it("lets the element replace a parent key of the same name", function()
    local r = parse(res(".files", { properties = { i = ".item" } }),
                    { { item = "parent", files = { { name = "a" } } } })
    assert.are.same({ name = "a" }, r.passed[1].properties.i)
  end)

  -- null is no children, as in Ocean (issue 10, deliverable 7); before
  -- that it was an item error ("itemsToParse must produce an array, got
  -- null")
  it("gives no children, and no error, when itemsToParse is null", function()
    local r = parse(res(".missing"), { { id = "x" }, repo, { id = "y", missing = { { name = "m" } } } })
    assert.are.same({}, r.errors)
    assert.are.same({ "m" }, { r.passed[1].identifier })
    assert.are.equal(1, #r.passed)
  end)

  local function at(errors, index)
    for _, e in ipairs(errors) do if e.index == index then return e end end
    return {}
  end

  local bad = {
    { ".meta", "itemsToParse must produce an array, got an object" },
    { ".repo", 'itemsToParse must produce an array, got "r1"' },
    { "empty", "itemsToParse must produce an array, got no output" },
    { ".repo | error", "itemsToParse must produce an array, got an error: r1" },
    { ".repo[]", "itemsToParse must produce an array, got an error: Cannot iterate over string (\"r1\")" },
    { ".repo.x", 'itemsToParse must produce an array, got an error: Cannot index string with string "x"' },
  }
  for _, case in ipairs(bad) do
    it("makes an item an error when " .. case[1] .. " is not an array", function()
      local r = parse(res(case[1]), { { id = "x" }, repo })
      assert.are.same(case[2], at(r.errors, 2).message)
      assert.are.equal(2, at(r.errors, 2).index)
    end)
  end

  it("reports errors and drops against the raw item's position", function()
    local r = parse(res(".files", nil), {
      { files = { { name = "a" } } },
      { files = { { name = "" }, { nope = 1 }, { name = "c" } } },
      { files = 5 },
    })
    assert.are.same({ "a", "c" }, { r.passed[1].identifier, r.passed[2].identifier })
    assert.are.same({ { index = 2, reason = 'identifier is ""' },
                      { index = 2, reason = "identifier is null" } }, r.dropped)
    assert.are.same({ { index = 3, message = "itemsToParse must produce an array, got 5" } },
                    r.errors)
  end)

  it("applies the selector to each element, and parse_all", function()
    local r = parse(H.resource({ identifier = ".item.name", blueprint = '"f"' },
      { selector = ".item.keep", port = { itemsToParse = ".files" } }),
      { { files = { { name = "a", keep = true }, { name = "b", keep = false },
                    { name = "c" } } } }, { parse_all = true })
    assert.are.same({ "a" }, { r.passed[1].identifier })
    assert.are.same({ "b" }, { r.failed[1].identifier })
    assert.are.same({ { index = 1, message = "selector must produce a boolean, got null" } },
                    r.errors)
  end)

  it("expands lists, JSON texts, JSON arrays and NDJSON alike", function()
    local rs = res(".files", { properties = { repo = ".repo" } })
    local text = H.json.encode(repo)
    local want = H.canon(parse(rs, { repo }))
    assert.are.equal(want, H.canon(parse(rs, { text })))
    assert.are.equal(want, H.canon(parse(rs, "[" .. text .. "]")))
    assert.are.equal(want, H.canon(parse(rs, text .. "\n")))
  end)

  it("gives no entity for an empty array", function()
    -- (an empty Lua table is an object: mark empty arrays with json.array)
    local r = parse(res(".files"), { { files = H.json.array() } })
    assert.are.same({ passed = {}, failed = {}, errors = {}, dropped = {}, misconfigured = {} }, r)
  end)

  it("gives the same as plain jq evaluation of whole items", function()
    local rs = res("(.files | map(select(.name != \"b\")))", { properties = {
      repo = ".repo", n = ".files | length", m = ".meta" } })
    local plain = assert(mapping.compile(rs, { projection = false, native = false }))
    local fast = assert(mapping.compile(rs))
    local items = { repo, { files = { { name = "z" } } } }
    assert.are.equal(H.canon(plain:parse(items)), H.canon(fast:parse(items)))
    assert.are.equal(H.canon(plain:parse(items)), H.canon(fast:parse(H.json.encode(items))))
  end)
end)
