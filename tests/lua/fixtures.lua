-- Router state documents in the wire format (providers/local/state.py),
-- compiled by config.lua as the data plane compiles what the controller sends.
local config = require("agc.config")

local _M = {}

function _M.path(type, value) return { path = { type = type, value = value } } end

-- A rule from its match and fields; `backends` default to one valid backend.
function _M.rule(m, fields)
  local rule = { route = "default/r", match = m, backends = { { id = "b", weight = 1, valid = true } } }
  for k, v in pairs(fields or {}) do rule[k] = v end
  return rule
end

-- The compiled state of a document with one listener "http" on port 80 whose
-- hosts are `hosts`, and `backends`.
function _M.state(hosts, backends)
  local doc = {
    frontends = { ["80"] = { { name = "http", port = 80 } } },
    hosts = { http = hosts },
    backends = backends or { b = { endpoints = { { addr = "10.0.0.1", port = 8080 } }, protocol = "http" } },
  }
  return assert(config.compile(doc))
end

-- The compiled rules of one catch-all host.
function _M.rules(...)
  local state = _M.state({ { rules = { ... } } })
  return config.lookup(state.hosts.http, "any.example").rules
end

return _M
