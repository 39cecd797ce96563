-- A mapping expression cannot reach the engine's own definitions
-- (__oc_..., the prelude and the program around the expression) nor
-- libjq's underscore internals: every such name in the user's text is a
-- compile error naming the kind, the field and the name, decided before
-- the expression is wrapped (src/jq/jqlex.c). Runs in this process: a
-- crash fails the run.
local H = dofile("spec/02-mapping/helper.lua")

local function compile_error(expr)
  local r, err = H.ocean.parse_items(H.resource(H.with({ properties = { x = expr } })),
                                     { { id = "i", a = { 1, 2 } } })
  return r, err
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- every __oc_ name the prelude and the program generator write (printf
-- patterns become a number)
local internal = {}
for _, file in ipairs({ "src/jq/jqprelude.c", "src/mapping/mapping_prog.c", "src/jq/jqlex.c" }) do
  local text = slurp(file):gsub("%%zu", "0"):gsub("%%s", "0")
  for name in text:gmatch("__oc_[%w_]*") do internal[name] = true end
end
local names = {}
for name in pairs(internal) do names[#names + 1] = name end
table.sort(names)

local LIBJQ = { "_plus", "_minus", "_multiply", "_divide", "_mod", "_equal",
  "_notequal", "_less", "_lesseq", "_greater", "_greatereq", "_negate",
  "_match_impl", "_strindices", "_input", "_sort_by_impl", "_group_by_impl",
  "_min_by_impl", "_max_by_impl", "_modify", "_assign", "_flatten" }

describe("reserved names", function()
  it("finds the engine's names", function()
    assert.is_true(#names >= 20)
    assert.is_true(internal.__oc_ffi and internal.__oc_send and internal.__oc_b_setpath)
  end)

  local function refused(expr, shown)
    local r, err = compile_error(expr)
    assert.is_nil(r)
    assert.is_truthy(err:find("kind 'k': properties.x: invalid jq expression", 1, true), err)
    assert.is_truthy(err:find("reserved name '" .. shown .. "'", 1, true), err)
  end

  for _, name in ipairs(names) do
    it(name .. " as a function, a definition, a $variable and a label", function()
      refused(name, name)
      refused('"x" | ' .. name, name)
      refused('[4, 1, "x", 1e9] | ' .. name, name)
      refused(name .. "(1)", name)
      refused(name .. "(1; 2)", name)
      refused("{a: [1, " .. name .. "]}", name)
      refused('"\\(' .. name .. ')"', name)
      refused("def " .. name .. ": 1; 2", name)
      refused(". as $" .. name .. " | 1", "$" .. name)
      refused("{$" .. name .. "}", "$" .. name)
      refused("label $" .. name .. " | 1", "$" .. name)
      refused("reduce .[] as [$" .. name .. "] (0; .)", "$" .. name)
    end)
  end

  for _, name in ipairs(LIBJQ) do
    it("libjq's " .. name, function()
      refused(name .. "(1; 2)", name)
      refused('"x" | ' .. name .. '("x"; "y"; "z")', name)
      refused(". as $" .. name .. " | 1", "$" .. name)
    end)
  end

  it("also in selectors and itemsToParse", function()
    local r, err = H.ocean.parse_items(H.resource(H.with({}), { selector = "__oc_ffi" }),
                                       { { id = "i" } })
    assert.is_nil(r)
    assert.is_truthy(err:find("reserved name '__oc_ffi'", 1, true), err)
    local res = H.resource(H.with({}))
    res.port.itemsToParse = ".a | __oc_send"
    r, err = H.ocean.parse_items(res, { { id = "i", a = {} } })
    assert.is_nil(r)
    assert.is_truthy(err:find("reserved name '__oc_send'", 1, true), err)
  end)

  -- fields, keys and strings are not names; underscore names of the
  -- user's own are theirs; _nwise stays (guarded, common in the wild)
  for _, case in ipairs({
    { "{__oc_ffi: 1} | .__oc_ffi", 1 },
    { "{__oc_ffi: 2} | {__oc_ffi}", { __oc_ffi = 2 } },
    { '{"__oc_send": 3} | ."__oc_send"', 3 },
    { '"__oc_ffi"', "__oc_ffi" },
    { "def _x: 4; _x", 4 },
    { "[1, 2, 3] | [_nwise(2)]", { { 1, 2 }, { 3 } } },
    { "[.a | _nwise(1)]", { { 1 }, { 2 } } },
    { ". as $x_oc_ | 5", 5 },
  }) do
    it("allows " .. case[1], function()
      assert.are.same(case[2], (H.field(case[1], { id = "i", a = { 1, 2 } })))
    end)
  end
end)

-- OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS=true exposes the process
-- environment to env/$ENV (as Ocean does), except Port's client secret and
-- integration settings whose names look secret (docs/jq.md).
describe("env and $ENV with environment access", function()
  it("hide OCEAN__PORT__CLIENT_SECRET and secret-looking integration settings", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
      local ocean, json = require "ocean", require "ocean.json"
      local r = assert(ocean.parse_items({kind = "k", selector = {query = "true"},
        port = {entity = {mappings = {identifier = ".id", blueprint = '"b"', properties = {
          a = '$ENV | [keys[] | select(startswith("OCEAN__"))]',
          b = 'env | [keys[] | select(startswith("OCEAN__"))]',
          c = "$ENV.OCEAN__PORT__CLIENT_SECRET // \"hidden\"",
          d = "env.OCEAN__INTEGRATION__CONFIG__REGION"}}}}}, {{id = "i"}}))
      print(json.encode(r.passed[1].properties))]])
    f:close()
    local env = ("LUA_PATH=%q LUA_CPATH=%q"):format(package.path, package.cpath)
    local p = io.popen(("env -i %s OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS=true "
      .. "OCEAN__PORT__CLIENT_SECRET=s3cr3t OCEAN__PORT__CLIENT_ID=cid "
      .. "OCEAN__INTEGRATION__CONFIG__API_TOKEN=t0k OCEAN__INTEGRATION__CONFIG__APP_KEY=k3y "
      .. "OCEAN__INTEGRATION__CONFIG__DB_PASSWORD=pw OCEAN__INTEGRATION__CONFIG__REGION=eu "
      .. "%s %s 2>&1"):format(env, jit and "luajit" or "lua5.4", path))
    local out = p:read("a")
    p:close()
    os.remove(path)
    assert.is_nil(out:find("s3cr3t", 1, true))
    local v = H.json.decode(out)
    local keys = { "OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS",
                   "OCEAN__INTEGRATION__CONFIG__REGION", "OCEAN__PORT__CLIENT_ID" }
    assert.are.same(keys, v.a)
    assert.are.same(keys, v.b)
    assert.are.equal("hidden", v.c)
    assert.are.equal("eu", v.d)
  end)
end)
