local yaml = require "ocean.yaml"
local json = require "ocean.json"

describe("ocean.yaml", function()
  it("keeps JSON's data model", function()
    local v = assert(yaml.load('a: [1, "true", true]\nb: ~\nc: []\nd: {}\ne: 1.5\nf: "5"\ng: |\n  x\n'))
    local text = json.encode(v):gsub(',"b":null', "")
    assert.are.equal('{"a":[1,"true",true],"c":[],"d":{},"e":1.5,"f":"5","g":"x\\n"}', text)
    assert.are.equal(json.null, v.b)
    assert.is_true(json.is_array(v.c))
  end)

  it("resolves anchors and aliases", function()
    local v = assert(yaml.load("a: &x {k: 1}\nb: *x\n"))
    assert.are.equal(1, v.b.k)
  end)

  it("names the source and position of a syntax error", function()
    local v, err = yaml.load("a: [1, 2\nb: 3\n", "conf.yml")
    assert.is_nil(v)
    assert.truthy(err:find("^invalid YAML: conf.yml"), err)
  end)
end)
