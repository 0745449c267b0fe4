-- wrk script: send game session requests that rotate through real ids read from a file.
--
-- Arguments (after `--`): ids file, HTTP method, path, body kind (heartbeat, verify or end),
-- API key and the thread count. The environment variable WRK_PAUSE_MS, when set above 0, is
-- the mean pause in ms between two requests of one connection; unset, each connection sends
-- its next request as soon as the answer arrives (closed loop).
--
-- Each line of the ids file is "<id> <provider user id>". Thread k of n sends lines k, k+n,
-- k+2n, ... so no two threads send the same line. Verify and end consume their id: when a
-- thread runs past the end of the file it starts again and counts the repeats in `wrapped`,
-- and the runner rejects a run with repeats rather than report cheaper duplicate answers.
--
-- With a pause, each connection waits a random 0.5x to 1.5x of it before its next request,
-- so the connections do not fire in step; wrk measures latency from the moment it writes the
-- request, so the pause is not counted in it.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_number", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local bodies = {
  heartbeat = '{"game_session_id":"%s","provider_user_id":"%s"}',
  verify = '{"ott":"playwave_%s","provider_user_id":"%s"}',
  ["end"] = '{"game_session_id":"%s","play_duration_sec":60}',
}

function init(args)
  local path, kind = args[1], args[4]
  method = args[2]
  url_path = args[3]
  template = bodies[kind]
  if template == nil then
    error("unknown body kind " .. tostring(kind))
  end
  headers = {["X-Api-Key"] = args[5], ["Content-Type"] = "application/json"}
  local thread_count = tonumber(args[6])

  lines = {}
  local number = 0
  for line in io.lines(path) do
    if number % thread_count == thread_number then
      local first, second = line:match("^(%S+) (%S+)$")
      table.insert(lines, {first, second})
    end
    number = number + 1
  end
  if #lines == 0 then
    error("ids file " .. path .. " has no lines for thread " .. thread_number)
  end
  position = 0
  wrapped = 0
  math.randomseed(thread_number + 1)
end

function request()
  position = position + 1
  if position > #lines then
    position = 1
    wrapped = wrapped + 1
  end
  local line = lines[position]
  return wrk.format(method, url_path, headers, string.format(template, line[1], line[2]))
end

-- wrk decides from the script's top level whether `delay` exists, before `init` runs, and a
-- defined `delay` puts every request behind a timer, so it is defined only when pacing.
local pause_ms = tonumber(os.getenv("WRK_PAUSE_MS") or "0")
if pause_ms > 0 then
  function delay()
    return math.floor(pause_ms * (0.5 + math.random()))
  end
end

function done(summary, latency, requests)
  local wrapped_total = 0
  for _, thread in ipairs(threads) do
    wrapped_total = wrapped_total + (thread:get("wrapped") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,"mean_us":%.1f,"p50_us":%d,'
      .. '"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, errors.status, errors.connect, errors.read,
    errors.write, errors.timeout, latency.mean, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    wrapped_total))
end
