-- wrk script: unique, valid events for leads minted before the run.
--   wrk -s events.lua URL -- IDS_FILE rotate   each id gets ev0, then ev1, ... (hot leads)
--   wrk -s events.lua URL -- IDS_FILE cold     each id gets one ev1 (transactions not in memory)
--   wrk -s events.lua URL -- IDS_FILE sale     each id gets sales (a repeatable conversion)
-- Prints one line "BENCH {json}" with the counts and latency percentiles (microseconds).

local ids = {}
local counter = 0
local mode = "rotate"

function init(args)
  for line in io.lines(args[1]) do
    ids[#ids + 1] = line
  end
  mode = args[2] or "rotate"
end

function request()
  counter = counter + 1
  local n = #ids
  local txn, event
  if mode == "sale" then
    txn = ids[(counter - 1) % n + 1]
    local body = '{"cid":"cmp_bench","event_id":"sale","transaction_id":"' .. txn ..
                 '","pid":"src_bench","revenue":"10.00"}'
    return wrk.format("POST", "/api/event/trigger", {["Content-Type"] = "application/json"},
                      body)
  elseif mode == "cold" then
    txn = ids[(counter - 1) % n + 1]
    event = "ev1"
  else
    txn = ids[(counter - 1) % n + 1]
    event = "ev" .. (math.floor((counter - 1) / n) % 10)
  end
  local body = '{"cid":"cmp_bench","event_id":"' .. event .. '","transaction_id":"' .. txn ..
               '","pid":"src_bench"}'
  return wrk.format("POST", "/api/event/trigger", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"status":%d,"p50":%d,"p99":%d,"p999":%d,"max":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
