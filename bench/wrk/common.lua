-- Shared beacon generators for Farol's wrk scripts (beacons.lua, batch.lua).
--
-- Everything is drawn from a seeded Park-Miller generator, so a given seed always yields the same
-- traffic mix and two runs (or two servers) see identical requests. Bodies are built with plain
-- string concatenation: every generated string is JSON-safe (no quotes, backslashes or controls).

local M = {}

local state = 1

--- Re-seeds the generator (any integer).
function M.seed(s)
  state = (math.floor(s) % 2147483646) + 1
end

--- A pseudo-random integer in 1..n. 16807 * (2^31 - 1) < 2^53, so doubles stay exact.
function M.rand(n)
  state = (state * 16807) % 2147483647
  return (state % n) + 1
end

function M.pick(list)
  return list[M.rand(#list)]
end

-- ~20 current browsers on desktop, phone and tablet (none trips isbot).
M.user_agents = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:126.0) Gecko/20100101 Firefox/126.0",
  "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
  "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36 Edg/125.0.2535.51",
  "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 EdgA/124.0.2478.64",
  "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
}

-- ~10 referrers; false stands for a direct visit (the tracker sends "r":null).
M.referrers = {
  false,
  "https://www.google.com/",
  "https://www.google.com/",
  "https://www.bing.com/",
  "https://duckduckgo.com/",
  "https://t.co/",
  "https://l.facebook.com/",
  "https://www.linkedin.com/",
  "https://www.reddit.com/",
  "https://news.ycombinator.com/",
  "https://chatgpt.com/",
  "https://example.com/blog/",
}

-- Query strings: mostly none, then campaigns, ads with a click id, and a ?ref= source.
M.queries = {
  "", "", "", "", "", "",
  "?utm_source=newsletter&utm_medium=email&utm_campaign=spring_launch",
  "?utm_source=google&utm_medium=cpc&utm_campaign=brand&gclid=Cj0KCQjw8J",
  "?utm_source=twitter&utm_medium=social&utm_campaign=launch_week",
  "?utm_source=partner&utm_medium=affiliate&utm_content=banner_a",
  "?ref=producthunt",
  "?fbclid=IwAR2xY",
}

M.widths = { 1440, 1920, 1366, 1536, 1280, 390, 393, 414, 360, 768, 820 }

-- 200 site paths: the usual pages, then blog posts, docs pages and product pages.
M.paths = { "/", "/pricing", "/features", "/about", "/contact", "/signup", "/login", "/docs", "/blog", "/careers" }
for n = 1, 80 do M.paths[#M.paths + 1] = "/blog/post-" .. n end
local doc_sections = { "getting-started", "api", "guides", "integrations", "self-hosting", "faq" }
for _, s in ipairs(doc_sections) do
  for n = 1, 10 do M.paths[#M.paths + 1] = "/docs/" .. s .. "/page-" .. n end
end
for n = 1, 50 do M.paths[#M.paths + 1] = "/products/" .. (1000 + n * 7) end

-- Custom events (about 1 in 10 beacons), with the props the Plausible tracker would send.
M.custom_events = {
  '"n":"Signup","p":{"plan":"pro","trial":true}',
  '"n":"Outbound Link: Click","p":{"url":"https://github.com/farol/farol"}',
  '"n":"File Download","p":{"url":"https://example.com/files/report.pdf"}',
  '"n":"Purchase","p":{"sku":"P-1042"},"$":{"currency":"EUR","amount":"49.90"}',
}

-- First octets of public unicast space: skips 0/8, 10/8, 100/8 (holds 100.64/10 CGNAT), 127/8,
-- 169/8 (link-local), 172/8 (172.16/12), 192/8 (192.168/16, 192.0.2/24), 198/8 (198.18/15,
-- 198.51.100/24), 203/8 (203.0.113/24) and 224+ (multicast, reserved). The whole-octet skips are
-- coarser than needed; they keep the rule obvious.
local first_octets = {}
for a = 1, 223 do
  if a ~= 10 and a ~= 100 and a ~= 127 and a ~= 169 and a ~= 172 and a ~= 192 and a ~= 198 and a ~= 203 then
    first_octets[#first_octets + 1] = a
  end
end

--- A pool of `n` public-looking IPv4 addresses, the same for a given seed.
function M.ip_pool(n, seed)
  local saved = state
  M.seed(seed)
  local pool = {}
  for i = 1, n do
    pool[i] = M.pick(first_octets) .. "." .. (M.rand(256) - 1) .. "." .. (M.rand(256) - 1) .. "." .. M.rand(254)
  end
  state = saved
  return pool
end

--- One tracker-style event object (JSON text); `extra` is appended inside the braces when given.
function M.event_json(extra)
  local url = "https://example.com" .. M.pick(M.paths) .. M.pick(M.queries)
  local head
  if M.rand(10) == 1 then
    head = M.pick(M.custom_events)
  else
    head = '"n":"pageview"'
  end
  local ref = M.pick(M.referrers)
  local r = ref and ('"' .. ref .. '"') or "null"
  local body = "{" .. head .. ',"u":"' .. url .. '","d":"example.com","r":' .. r .. ',"w":' .. M.pick(M.widths)
  if extra then body = body .. "," .. extra end
  return body .. "}"
end

--- Parses wrk's trailing script arguments (`-- --key=value ...`) into a table.
function M.parse_args(args)
  local out = {}
  for _, a in ipairs(args or {}) do
    local k, v = string.match(a, "^%-%-([%w-]+)=(.*)$")
    if k then out[k] = v end
  end
  return out
end

--- Installs a global `delay()` pacing each connection to one request per `interval_us` on average.
-- wrk's delay is in whole milliseconds, so the fraction is dithered: floor or ceil at random with
-- the probability that keeps the mean exact. Without this call no `delay` exists and wrk runs flat
-- out (a defined `delay` costs a timer per request even when it returns 0).
function M.install_pacing(interval_us)
  local ms = interval_us / 1000
  local base = math.floor(ms)
  local frac = ms - base
  math.randomseed(os.time())
  delay = function()
    if math.random() < frac then return base + 1 end
    return base
  end
end

--- Installs a global `delay()` that holds this wrk thread to `rps` requests per second on a fixed
-- schedule (open loop): request k is sent at start + k / rps or, when the server answers later than
-- that, as soon as a connection is free; never faster. `install_pacing`'s think time per
-- connection gives c / (interval + latency) instead, so its rate moves with the latency: a
-- calibrated interval overshot by 20-75% when the latency fell after the calibration (e2e, stop 16).
-- A schedule more than 50 ms behind is moved up to now: a slow moment is not made up in a burst.
function M.install_rate(rps)
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_usec; } farol_timeval;
    int gettimeofday(farol_timeval *tv, void *tz);
  ]]
  local tv = ffi.new("farol_timeval")
  local function now_ms()
    ffi.C.gettimeofday(tv, nil)
    return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
  end
  local step = 1000 / rps
  local next_at = nil
  math.randomseed(os.time())
  delay = function()
    local now = now_ms()
    if next_at == nil or next_at < now - 50 then next_at = now end
    local wait = next_at - now
    next_at = next_at + step
    if wait <= 0 then return 0 end
    -- wrk's delay is in whole milliseconds: dithered as install_pacing does.
    local base = math.floor(wait)
    if math.random() < wait - base then return base + 1 end
    return base
  end
end

return M
