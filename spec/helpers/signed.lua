-- spec/fixtures/live's POST /integration/signed, a processor that checks a
-- GitHub-style X-Hub-Signature-256 over the body's bytes (ocean.hmac,
-- ocean.secure_compare, event.raw_body), in whatever serves it (`ocean
-- sail`, nginx): a correctly signed event answers ok, the same JSON
-- serialised again (other bytes) and a signature under another secret 401.
--   signed.check(server, secret, id)   server: anything with :http(...)
local json = require "ocean.json"
local ocean = require "ocean"
local assert = require "luassert"

local _M = {}

function _M.check(server, secret, id)
  local text = '{"item": {"id": "' .. id .. '", "name": "Signed", "size": 3}}'
  local function post(body, key)
    local status, answer = server:http("POST", "/integration/signed", { body = body, headers = {
      ["X-Hub-Signature-256"] = "sha256=" .. ocean.hmac("sha256", key, text) } })
    return status, json.decode(answer) or answer
  end
  assert.are.same({ 200, { status = "ok" } }, { post(text, secret) })
  local again = json.encode(json.decode(text))
  assert(again ~= text)
  assert.are.equal(401, (post(again, secret)))    -- the same JSON, other bytes
  assert.are.equal(401, (post(text, "a guess")))
end

return _M
