-- Runs Lua test files inside an NGINX request (tests/lua/test_lua.py starts
-- the NGINX): the code under test sees the real ngx API, as in the data plane.
--
-- A test file returns a table of test functions by name; they run in name
-- order, each in a pcall. The answer has one line per test, "ok NAME" or
-- "FAIL NAME: error and traceback", then "total N failed M".
local _M = {}

local function run_file(name)
  local tests = require(name)
  local names = {}
  for test_name in pairs(tests) do names[#names + 1] = test_name end
  table.sort(names)
  local failed = 0
  for _, test_name in ipairs(names) do
    local ok, err = xpcall(tests[test_name], debug.traceback)
    if ok then
      ngx.say("ok ", test_name)
    else
      failed = failed + 1
      ngx.say("FAIL ", test_name, ": ", err)
    end
  end
  ngx.say("total ", #names, " failed ", failed)
end

function _M.run()
  local name = ngx.var.arg_file
  if not name or not name:match("^test_[%w_]+$") then return ngx.exit(400) end
  local ok, err = xpcall(run_file, debug.traceback, name)
  if not ok then ngx.say("FAIL loading ", name, ": ", err) end
end

-- Compiles the router state in the request body as the data plane would: "ok"
-- or the reason it refuses it.
function _M.compile()
  ngx.req.read_body()
  local doc, err = require("cjson.safe").decode(ngx.req.get_body_data() or "")
  if not doc then
    ngx.say("invalid JSON: ", err)
    return
  end
  local state, cerr = require("agc.config").compile(doc)
  ngx.say(state and "ok" or cerr)
end

return _M
