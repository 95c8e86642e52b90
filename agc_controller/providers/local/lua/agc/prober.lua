-- The health prober (HealthCheckPolicy): worker 0 probes the endpoints of
-- every backend whose Target carries `health` (agc.health).
--
-- One prober per data plane, so each endpoint is probed once per interval, not
-- once per worker: a timer every TICK walks the compiled state's backends and
-- starts a probe (a timer of its own) for each endpoint whose interval has
-- passed and whose last probe is done. Counts of passed and failed probes in a
-- row live in this worker; out-marks live in the shared dict agc_health. A
-- reload keeps the dict: a new worker 0 starts its counts afresh from each
-- endpoint's last known state. Out-marks expire (OUT_TTL_INTERVALS intervals,
-- refreshed by every failed probe), so an endpoint that leaves its backend
-- leaves no mark behind for long.
local config = require("agc.config")
local health = require("agc.health")

local _M = {}

local TICK = 0.1
-- probes in flight at once (NGINX caps running timers at 256 by default)
local MAX_IN_FLIGHT = 64
local OUT_TTL_INTERVALS = 10
local OUT_TTL_MIN = 60

-- endpoint key -> { key, busy, next_at, passes, fails, out }
local records = {}
local in_flight = 0

local function run_probe(premature, rec, check, addr, port)
  if not premature then
    local passed, why = health.probe(check, addr, port)
    -- a record dropped meanwhile (the endpoint left) is not marked any more
    if records[rec.key] == rec then
      local dict = ngx.shared.agc_health
      local moved = health.record(rec, passed, check)
      if rec.out then
        dict:set(rec.key, true, math.max(OUT_TTL_MIN, OUT_TTL_INTERVALS * check.interval))
      elseif moved == "in" then
        dict:delete(rec.key)
      end
      if moved then
        ngx.log(ngx.WARN, "agc: endpoint ", rec.key, " is ", moved, passed and "" or
          (" (" .. tostring(why) .. ")"))
      end
    end
  end
  rec.busy = false
  in_flight = in_flight - 1
end

-- Start due probes; forget endpoints no backend has any more.
function _M.tick(now, state)
  local seen = {}
  for id, target in pairs(state.backends) do
    local check = target.health
    if check then
      for _, ep in ipairs(target.endpoints) do
        local key = ep.health_key
        seen[key] = true
        local rec = records[key]
        if not rec then
          rec = { key = key, busy = false, next_at = 0, passes = 0, fails = 0,
                  out = health.out(key) }
          records[key] = rec
        end
        if not rec.busy and now >= rec.next_at and in_flight < MAX_IN_FLIGHT then
          rec.next_at = now + check.interval
          local ok = ngx.timer.at(0, run_probe, rec, check, ep.addr, check.port or ep.port)
          if ok then
            rec.busy = true
            in_flight = in_flight + 1
          end
        end
      end
    end
  end
  for key in pairs(records) do
    if not seen[key] then records[key] = nil end
  end
end

local function on_tick(premature)
  if premature then return end
  local state = config.get()
  if state then _M.tick(ngx.now(), state) end
end

-- init_worker: worker 0 runs the prober.
function _M.start()
  if ngx.worker.id() ~= 0 then return end
  local ok, err = ngx.timer.every(TICK, on_tick)
  if not ok then ngx.log(ngx.ERR, "agc: health prober not started: ", err) end
end

return _M
