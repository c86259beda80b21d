-- Unique addresses per request: run id (from the environment) + thread + counter.
local run = os.getenv("BENCH_RUN") or "run"
-- Each wrk run of each bench gets its own client addresses (BENCH_NET: a random
-- block per bench process, then one per run), so a run is never refused for the
-- signups of an earlier one within the limits' hour.
local net = os.getenv("BENCH_NET") or "0"
local threads = {}
local counter = 0
thread_id = 0  -- set per thread by setup() (a global: thread:set writes globals)
local pause_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"email": "p%s-%d-%d@bench.example", "first_name": "Pat"}', run, thread_id, counter)
  -- Each request from its own client address (drip trusts one proxy in the bench),
  -- so the real per-IP limits stay in force without refusing the load.
  local ip = string.format("2001:db8:%s:%x::%x", net, thread_id, counter)
  return wrk.format("POST", "/api/v1/subscribers",
    {["Content-Type"] = "application/json", ["User-Agent"] = "wrk-bench",
     ["X-Forwarded-For"] = ip}, body)
end

function delay()
  return pause_ms
end

-- BENCH_LIMIT: stop after this many answers per thread (a burst of a known size).
local limit = tonumber(os.getenv("BENCH_LIMIT") or "0")
local answered = 0

function response(status, headers, body)
  answered = answered + 1
  if limit > 0 and answered >= limit then
    wrk.thread:stop()
  end
end
