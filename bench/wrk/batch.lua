-- wrk script: POST /api/batch with 100 events per request, as a server-side sender forwards them.
--
--   wrk -t1 -c16 -d10s --latency -s bench/wrk/batch.lua http://127.0.0.1:8080
--
-- Each event carries its visitor's `ip` and `ua` (honoured because the collector runs with
-- FAROL_TRUST_PROXY=127.0.0.1/32, i.e. the sender is a trusted proxy), drawn from the same pools as
-- beacons.lua. Bodies are formatted once in init() and replayed in a cycle.

local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local PREBUILT = 256
local IP_POOL = 10000

local requests = {}
local count = 0
local next_index = 0

local threads_seen = 0
function setup(thread)
  threads_seen = threads_seen + 1
  thread:set("thread_index", threads_seen)
end

function init(args)
  local opts = common.parse_args(args)
  local per_request = tonumber(opts["events"] or "100")
  local index = thread_index or 1
  local ips = common.ip_pool(IP_POOL, 424242)
  common.seed(104729 * index)
  for i = 1, PREBUILT do
    local events = {}
    for e = 1, per_request do
      local extra = '"ip":"' .. common.pick(ips) .. '","ua":"' .. common.pick(common.user_agents) .. '"'
      events[e] = common.event_json(extra)
    end
    local headers = {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "farol-forwarder/1.0",
      ["X-Forwarded-For"] = common.pick(ips),
    }
    requests[i] = wrk.format("POST", "/api/batch", headers, "[" .. table.concat(events, ",") .. "]")
  end
  count = PREBUILT
  next_index = common.rand(count) - 1
  if opts["rate"] then common.install_rate(tonumber(opts["rate"]))
  elseif opts["interval-us"] then common.install_pacing(tonumber(opts["interval-us"])) end
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end
