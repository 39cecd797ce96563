-- ocean.hmac and ocean.secure_compare (src/lua/lcrypto.c, on OpenSSL's
-- libcrypto): the known answers of RFC 2202 (HMAC-SHA-1) and RFC 4231
-- (HMAC-SHA-256/384/512), GitHub's documented X-Hub-Signature-256
-- example, the three encodings, binary keys and messages, and the errors
-- of API misuse (which never quote a key).
local ocean = require "ocean"

local function rep(byte, n) return string.rep(string.char(byte), n) end
local function range(a, b)
  local t = {}
  for i = a, b do t[#t + 1] = string.char(i) end
  return table.concat(t)
end
local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- RFC 2202 section 3 (HMAC-SHA-1), test cases 1 to 7
local RFC2202 = {
  { rep(0x0b, 20), "Hi There", "b617318655057264e28bc0b6fb378c8ef146be00" },
  { "Jefe", "what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79" },
  { rep(0xaa, 20), rep(0xdd, 50), "125d7342b9ac11cd91a39af48aa17b4f63f175d3" },
  { range(1, 25), rep(0xcd, 50), "4c9007f4026250c6bc8414f9bf50c86c2d7235da" },
  { rep(0x0c, 20), "Test With Truncation", "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04" },
  { rep(0xaa, 80), "Test Using Larger Than Block-Size Key - Hash Key First",
    "aa4ae5e15272d00e95705637ce8a3b55ed402112" },
  { rep(0xaa, 80), "Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
    "e8e99d0f45237d786d6bbaa7965c7808bbff1a91" },
}

-- RFC 4231 section 4 (test case 5 truncates the output: not an API here)
local RFC4231 = {
  { "1", rep(0x0b, 20), "Hi There",
    sha256 = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    sha384 = "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
      .. "faea9ea9076ede7f4af152e8b2fa9cb6",
    sha512 = "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
      .. "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854" },
  { "2", "Jefe", "what do ya want for nothing?",
    sha256 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    sha384 = "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
      .. "8e2240ca5e69e2c78b3239ecfab21649",
    sha512 = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
      .. "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737" },
  { "3", rep(0xaa, 20), rep(0xdd, 50),
    sha256 = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
    sha384 = "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b"
      .. "2a5ab39dc13814b94e3ab6e101a34f27",
    sha512 = "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39"
      .. "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb" },
  { "4", range(1, 25), rep(0xcd, 50),
    sha256 = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    sha384 = "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e"
      .. "6801dd23c4a7d679ccf8a386c674cffb",
    sha512 = "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
      .. "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd" },
  { "6", rep(0xaa, 131), "Test Using Larger Than Block-Size Key - Hash Key First",
    sha256 = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    sha384 = "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
      .. "0c2ef6ab4030fe8296248df163f44952",
    sha512 = "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
      .. "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598" },
  { "7", rep(0xaa, 131), "This is a test using a larger than block-size key and a larger than "
      .. "block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
    sha256 = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    sha384 = "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5"
      .. "a678cc31e799176d3860e6110c46523e",
    sha512 = "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944"
      .. "b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58" },
}

describe("ocean.hmac", function()
  it("gives RFC 2202's HMAC-SHA-1 answers", function()
    for i, c in ipairs(RFC2202) do
      assert.are.equal(c[3], ocean.hmac("sha1", c[1], c[2]), "RFC 2202 test case " .. i)
    end
  end)

  for _, alg in ipairs { "sha256", "sha384", "sha512" } do
    it("gives RFC 4231's HMAC-" .. alg:upper() .. " answers", function()
      for _, c in ipairs(RFC4231) do
        assert.are.equal(c[alg], ocean.hmac(alg, c[2], c[3]), "RFC 4231 test case " .. c[1])
      end
    end)
  end

  it("gives GitHub's documented X-Hub-Signature-256 for its example", function()
    -- docs.github.com, "Validating webhook deliveries": secret and payload
    assert.are.equal("757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
      ocean.hmac("sha256", "It's a Secret to Everybody", "Hello, World!"))
  end)

  it("encodes as lower-case hex (default), base64 or the raw bytes", function()
    local key, msg = "Jefe", "what do ya want for nothing?"
    local hex = ocean.hmac("sha256", key, msg)
    assert.are.equal(hex, ocean.hmac("sha256", key, msg, "hex"))
    assert.are.equal(hex, ocean.hmac("sha256", key, msg, nil))
    local raw = ocean.hmac("sha256", key, msg, "raw")
    assert.are.equal(32, #raw)
    assert.are.equal(unhex(hex), raw)
    -- base64 of RFC 4231 case 2 (RFC 4648 alphabet, padded, one line)
    assert.are.equal("W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
      ocean.hmac("sha256", key, msg, "base64"))
    -- every padding length: 20 bytes (one '='), 64 bytes (two '='), 48 (none)
    assert.are.equal("3nybhbi3iqa8ino29wqQcBydtNk=",
      ocean.hmac("sha1", "key", "The quick brown fox jumps over the lazy dog", "base64"))
    assert.truthy(ocean.hmac("sha512", key, msg, "base64"):match("^[%w+/]+==$"))
    assert.truthy(ocean.hmac("sha384", key, msg, "base64"):match("^[%w+/]+$"))
    assert.are.equal(88, #ocean.hmac("sha512", key, msg, "base64"))
  end)

  it("takes keys and messages as bytes: empty, with NULs, not UTF-8", function()
    assert.are.equal("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
      ocean.hmac("sha256", "", ""))
    local a = ocean.hmac("sha256", "k\0x", "m\0\255")
    assert.are_not.equal(a, ocean.hmac("sha256", "k", "m\0\255"))    -- the key is not cut at NUL
    assert.are_not.equal(a, ocean.hmac("sha256", "k\0x", "m"))       -- nor the message
    assert.are.equal(a, ocean.hmac("sha256", "k\0x", "m\0\255"))
  end)

  it("raises on misuse, naming the argument, at the caller's line, never quoting a key", function()
    local function err(...)
      local ok, e = pcall(ocean.hmac, ...)
      assert.is_false(ok)
      return e
    end
    assert.matches("ocean.hmac: unknown algorithm 'md5' (argument 1)", err("md5", "k", "m"), 1, true)
    assert.matches("lower case", err("SHA256", "k", "m"), 1, true)
    -- a key where the algorithm belongs: not repeated in the error
    local e = err("a-long-webhook-secret-value", "payload", "sha256")
    assert.matches("unknown algorithm (not shown", e, 1, true)
    assert.is_nil(e:find("webhook-secret", 1, true))
    assert.matches("the algorithm (argument 1) must be a string, got nil", err(nil, "k", "m"), 1, true)
    assert.matches("the key (argument 2) must be a string, got number", err("sha256", 5, "m"), 1, true)
    assert.matches("the key (argument 2) must be a string, got no value", err("sha256"), 1, true)
    assert.matches("the message (argument 3) must be a string, got table",
      err("sha256", "k", {}), 1, true)
    assert.matches("unknown encoding 'hexa' (argument 4)", err("sha256", "k", "m", "hexa"), 1, true)
    assert.matches("the encoding (argument 4) must be", err("sha256", "k", "m", 16), 1, true)
    -- raised where it was called, as luaL_argerror does
    local ok, where = pcall(function()
      local v = ocean.hmac("sha256", false, "m")   -- not a tail call: LuaJIT drops that frame
      return v
    end)
    assert.is_false(ok)
    assert.matches("hmac_spec.lua:%d+: ocean.hmac: the key", where)
  end)
end)

describe("ocean.secure_compare", function()
  it("is string equality for strings of the same length", function()
    local sig = "sha256=" .. ocean.hmac("sha256", "s", "body")
    assert.is_true(ocean.secure_compare(sig, "sha256=" .. ocean.hmac("sha256", "s", "body")))
    assert.is_false(ocean.secure_compare(sig, "sha256=" .. ocean.hmac("sha256", "t", "body")))
    -- one byte differs, first or last
    assert.is_false(ocean.secure_compare(sig, "x" .. sig:sub(2)))
    assert.is_false(ocean.secure_compare(sig, sig:sub(1, -2) .. (sig:sub(-1) == "0" and "1" or "0")))
    assert.is_true(ocean.secure_compare("", ""))
    assert.is_true(ocean.secure_compare("a\0b", "a\0b"))
    assert.is_false(ocean.secure_compare("a\0b", "a\0c"))
  end)

  it("is false for different lengths and for what is not a string", function()
    assert.is_false(ocean.secure_compare("abc", "abcd"))
    assert.is_false(ocean.secure_compare("abc", "ab"))
    assert.is_false(ocean.secure_compare("", "a"))
    assert.is_false(ocean.secure_compare(nil, nil))
    assert.is_false(ocean.secure_compare("1", 1))
    assert.is_false(ocean.secure_compare(1, 1))
    assert.is_false(ocean.secure_compare("a"))
    assert.is_false(ocean.secure_compare({}, {}))
  end)
end)
