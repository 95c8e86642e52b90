-- WebApplicationFirewallPolicy on the data plane: ModSecurity with the OWASP
-- Core Rule Set inspects the requests of the rules a policy governs, and no
-- others (the rule set costs a request ~35 times its routing).
--
-- Each policy's rule set is loaded once, in its own internal location of the
-- static configuration (static.py: `/_agc_waf/<id>`, `modsecurity on` there
-- only). A request is inspected by a subrequest to that location: it shares the
-- request's line, headers, client address and body, and ModSecurity sees the
-- client's own URI. The location answers 204; a request the rules block gets
-- ModSecurity's status instead (a policy in Detection mode loads its rules as
-- DetectionOnly: they log, and never block). ModSecurity writes what matched,
-- with the rule ids, to the data plane's audit log as JSON (waf.log). The
-- request then goes on to be routed as if nothing happened, or gets the
-- policy's block response.
--
-- Methods a subrequest cannot carry are blocked: the rule set allows GET, HEAD,
-- POST and OPTIONS by default anyway (rule 911100), and an uninspected request
-- must not pass a firewall in Prevention mode.
local _M = {}

local LOCATION = "/_agc_waf/"
local METHODS = {}
for _, name in ipairs({
  "GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE",
  "PROPFIND", "PROPPATCH", "LOCK", "UNLOCK", "PATCH", "TRACE",
}) do
  METHODS[name] = ngx["HTTP_" .. name]
end

local function block(w)
  ngx.status = w.status
  ngx.header["Content-Type"] = w.content_type
  ngx.header["X-AGC-WAF"] = "blocked"
  if w.body and w.body ~= "" then ngx.print(w.body) end
  return ngx.exit(w.status)
end

-- True to go on with the request; otherwise it has been answered.
function _M.inspect(w)
  local method = METHODS[ngx.req.get_method()]
  if not method then
    if w.detect then return true end
    return block(w)
  end
  ngx.req.read_body()
  local res = ngx.location.capture(LOCATION .. w.id, {
    method = method,
    always_forward_body = true,
  })
  local status = res and res.status or 0
  if status == ngx.HTTP_NO_CONTENT or w.detect then
    if status >= 500 or status == 0 then
      ngx.log(ngx.ERR, "waf: inspection failed with status ", status, " (detection only: passed)")
    end
    return true
  end
  if status >= 400 and status < 500 then return block(w) end
  -- the inspection itself failed: a firewall in Prevention mode fails closed
  ngx.log(ngx.ERR, "waf: inspection failed with status ", status)
  return ngx.exit(500)
end

-- The state's Waf, checked once when its rule is compiled.
function _M.compile(w)
  if w == nil then return nil end
  if type(w.id) ~= "string" or not w.id:match("^[0-9a-f]+$") then
    return nil, "waf: invalid rule set id"
  end
  if type(w.status) ~= "number" or w.status < 200 or w.status > 599 then
    return nil, "waf: invalid block status"
  end
  return w
end

return _M
