-- wrk script: POST a reserve for a fresh user on every request.
-- SPIKE_EVENT (default 1) picks the event; SPIKE_EVENTS=N spreads the
-- requests over events 1..N in turn instead (bench/scaleout.sh);
-- SPIKE_USER_BASE keeps users fresh across runs against the same store.
local base = tonumber(os.getenv("SPIKE_USER_BASE") or "1") or 1
local event = os.getenv("SPIKE_EVENT") or "1"
local events = tonumber(os.getenv("SPIKE_EVENTS") or "0") or 0
local path = "/api/v1/events/" .. event .. "/orders"
local headers = { ["Content-Type"] = "application/json" }
local n = 0
local threads = 0

setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

request = function()
  n = n + 1
  local user = base + (tid or 0) * 100000000 + n
  if events > 0 then path = "/api/v1/events/" .. (n % events + 1) .. "/orders" end
  return wrk.format("POST", path, headers, '{"user_id":"' .. user .. '"}')
end
