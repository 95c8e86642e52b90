-- Assertions for the Lua tests: each raises an error naming what differed.
local _M = {}

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. show(v[k]) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

function _M.eq(actual, expected, what)
  if not same(actual, expected) then
    error((what or "value") .. ": expected " .. show(expected) .. ", got " .. show(actual), 2)
  end
end

function _M.truthy(value, what)
  if not value then error((what or "value") .. ": expected true, got " .. show(value), 2) end
end

function _M.falsy(value, what)
  if value then error((what or "value") .. ": expected false, got " .. show(value), 2) end
end

-- A number generator that returns `values` in turn, for weighted choices.
function _M.rolls(values)
  local i = 0
  return function()
    i = i + 1
    return values[i]
  end
end

return _M
