-- Weighted backends and mirror shares (agc.router's pick_backend, choose_mirrors).
local t = require("t")
local f = require("fixtures")
local router = require("agc.router")

local function weighted(...)
  local backends = {}
  for i, w in ipairs({ ... }) do backends[i] = { id = "b" .. i, weight = w, valid = true } end
  return f.rules(f.rule(f.path("PathPrefix", "/"), { backends = backends }))[1]
end

local function pick(rule, roll)
  local b = router.pick_backend(rule, function() return roll end)
  return b and b.id
end

local T = {}

function T.shares_follow_the_weights()
  local rule = weighted(80, 20)
  t.eq(rule.total, 100)
  t.eq(pick(rule, 0), "b1")
  t.eq(pick(rule, 0.79), "b1")
  t.eq(pick(rule, 0.8), "b2")
  t.eq(pick(rule, 0.999999), "b2")
end

function T.counted_over_an_even_spread_of_rolls()
  local rule = weighted(1, 2, 7)
  local counts = {}
  for i = 0, 999 do
    local id = pick(rule, i / 1000)
    counts[id] = (counts[id] or 0) + 1
  end
  t.eq(counts, { b1 = 100, b2 = 200, b3 = 700 })
end

function T.a_zero_weight_takes_no_traffic()
  local rule = weighted(0, 1, 0)
  for _, roll in ipairs({ 0, 0.5, 0.999 }) do t.eq(pick(rule, roll), "b2", roll) end
end

function T.all_weights_zero_picks_none()
  t.eq(pick(weighted(0, 0), 0.5), nil)
end

function T.an_invalid_backend_is_picked_for_its_share()
  -- the router answers 500 for it: the share of an unresolved backendRef
  local rule = f.rules(f.rule(f.path("PathPrefix", "/"), { backends = {
    { id = "ok", weight = 1, valid = true }, { id = "missing", weight = 1 } } }))[1]
  local b = router.pick_backend(rule, function() return 0.75 end)
  t.eq(b.id, "missing")
  t.falsy(b.valid)
end

function T.mirrors_take_their_percentage_independently()
  local rule = f.rules(f.rule(f.path("PathPrefix", "/"), { mirrors = {
    { backend = "m1", percent = 50 }, { backend = "m2", percent = 12.5 } } }))[1]
  local function chosen(rolls)
    for i = 0, 3 do ngx.var["agc_mirror" .. i] = "" end
    local any = router.choose_mirrors(rule, t.rolls(rolls))
    return any, ngx.var.agc_mirror0, ngx.var.agc_mirror1
  end
  t.eq({ chosen({ 0.49, 0.124 }) }, { true, "m1", "m2" })
  t.eq({ chosen({ 0.5, 0.124 }) }, { true, "", "m2" })
  t.eq({ chosen({ 0.49, 0.125 }) }, { true, "m1", "" })
  t.eq({ chosen({ 0.99, 0.99 }) }, { false, "", "" })
end

function T.at_most_four_mirrors()
  local mirrors = {}
  for i = 1, 5 do mirrors[i] = { backend = "m" .. i, percent = 100 } end
  local rule = f.rules(f.rule(f.path("PathPrefix", "/"), { mirrors = mirrors }))[1]
  local rolled = 0
  router.choose_mirrors(rule, function() rolled = rolled + 1; return 0 end)
  t.eq(rolled, 4)
  t.eq(ngx.var.agc_mirror3, "m4")
end

return T
