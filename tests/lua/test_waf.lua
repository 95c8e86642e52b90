-- The firewall's part of a rule (agc.waf): what the state may hold. The inspection
-- itself needs ModSecurity in an NGINX location: tests/e2e/test_waf.py.
local t = require("t")
local waf = require("agc.waf")

local T = {}

function T.a_rule_set_id_and_a_block_status_compile()
  local w = { id = "0123456789abcdef", status = 406, body = "no", content_type = "text/plain" }
  t.eq(waf.compile(w), w)
  t.eq(waf.compile(nil), nil)
end

function T.nothing_that_could_name_another_location_compiles()
  for _, id in ipairs({ "../config", "abc/def", "ABC", "", "1 2" }) do
    local c, err = waf.compile({ id = id, status = 403 })
    t.eq(c, nil, id)
    t.eq(err, "waf: invalid rule set id")
  end
  for _, status in ipairs({ 199, 600, "403" }) do
    local c, err = waf.compile({ id = "ab", status = status })
    t.eq(c, nil, tostring(status))
    t.eq(err, "waf: invalid block status")
  end
end

return T
