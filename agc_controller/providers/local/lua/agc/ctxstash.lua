-- ngx.ctx does not survive ngx.exec (to the gRPC and backend-TLS locations);
-- stash it in a per-worker table keyed by a request variable and pick it up
-- again after the jump. Entries are dropped in the log phase.
local _M = {}
local stash, counter = {}, 0

function _M.save()
  -- stashed already (the request jumped before): the same entry serves again
  local id = tonumber(ngx.var.agc_ctx)
  if id and stash[id] == ngx.ctx then return end
  counter = counter + 1
  stash[counter] = ngx.ctx
  ngx.var.agc_ctx = counter
end

function _M.get()
  local ctx = ngx.ctx
  if next(ctx) == nil then
    local id = tonumber(ngx.var.agc_ctx)
    local saved = id and stash[id]
    if saved then
      ngx.ctx = saved
      return saved
    end
  end
  return ctx
end

function _M.release()
  -- subrequests (mirrors) share the parent's variables: only the parent releases
  if ngx.is_subrequest then return end
  local id = tonumber(ngx.var.agc_ctx)
  if id then stash[id] = nil end
end

return _M
