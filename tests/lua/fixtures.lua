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

-- `doc` in the wire format: rules written inline in its hosts move to its
-- `rules` table, the hosts keeping their ids (r1, r2, ... in order of appearance).
function _M.doc(doc)
  doc.rules = doc.rules or {}
  local n = 0
  for _, hosts in pairs(doc.hosts or {}) do
    for _, host in ipairs(hosts) do
      for i, rule in ipairs(host.rules or {}) do
        if type(rule) == "table" then
          n = n + 1
          doc.rules["r" .. n] = rule
          host.rules[i] = "r" .. n
        end
      end
    end
  end
  return doc
end

-- The compiled state of a document with one listener "http" on port 80 whose
-- hosts are `hosts` (rules inline), and `backends`.
function _M.state(hosts, backends)
  local doc = _M.doc({
    frontends = { ["80"] = { { name = "http", port = 80 } } },
    hosts = { http = hosts },
    backends = backends or { b = { endpoints = { { addr = "10.0.0.1", port = 8080 } }, protocol = "http" } },
  })
  return assert(config.compile(doc))
end

-- The compiled rules of one catch-all host.
function _M.rules(...)
  local state = _M.state({ { rules = { ... } } })
  return config.lookup(state.hosts.http, "any.example").rules
end

return _M
