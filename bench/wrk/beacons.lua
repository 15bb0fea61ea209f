-- wrk script: one tracker beacon per request, as Plausible's script sends it.
--
--   wrk -t1 -c64 -d10s --latency -s bench/wrk/beacons.lua http://127.0.0.1:8080
--   wrk ... -s bench/wrk/beacons.lua http://127.0.0.1:8080 -- --rate=10000   (paced: req/s per wrk thread)
--   wrk ... -s bench/wrk/beacons.lua http://127.0.0.1:8080 -- --interval-us=3200   (think time per connection)
--
-- POST /api/event, Content-Type text/plain, ~20 User-Agents, ~10 referrers, 200 paths, and an
-- X-Forwarded-For from a pool of 10,000 public IPv4 addresses (the collector runs with
-- FAROL_TRUST_PROXY=127.0.0.1/32), so visitor ids and geo lookups vary. The requests are formatted once in
-- init() and replayed in a cycle, so the Lua side costs one table read per request.

local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local PREBUILT = 4096
local IP_POOL = 10000

local requests = {}
local count = 0
local next_index = 0

-- setup() runs in the main Lua state once per thread, before init(): give each thread its own seed.
local threads_seen = 0
function setup(thread)
  threads_seen = threads_seen + 1
  thread:set("thread_index", threads_seen)
end

function init(args)
  local opts = common.parse_args(args)
  local index = thread_index or 1
  local ips = common.ip_pool(IP_POOL, 424242)
  common.seed(7919 * index)
  for i = 1, PREBUILT do
    local headers = {
      ["Content-Type"] = "text/plain",
      ["User-Agent"] = common.pick(common.user_agents),
      ["X-Forwarded-For"] = common.pick(ips),
    }
    requests[i] = wrk.format("POST", "/api/event", headers, common.event_json())
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
