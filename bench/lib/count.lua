-- wrk: POST the JSON body in BODY, and count the answers by status (503 OVERLOADED apart), so the
-- load test can say that every error was an OVERLOADED. Prints one line "STATUSES k=v ...".
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  local key = tostring(status)
  if status ~= 200 and body ~= nil and string.find(body, "OVERLOADED", 1, true) then
    key = key .. "-OVERLOADED"
  end
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do
      total[k] = (total[k] or 0) + v
    end
  end
  io.write("STATUSES")
  for k, v in pairs(total) do
    io.write(" " .. k .. "=" .. v)
  end
  io.write("\n")
end
