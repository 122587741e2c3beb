-- wrk script: sends pre-built requests from a file, one per line (`METHOD /path?query`, or a bare
-- path for GET), cycling through it.
-- Each thread takes every n-th line of the file, so no two threads send the same request. Every request goes through this function, so ping and signed reads cost wrk the same.
-- POOL: the file of paths; APIKEY_FILE: a file holding the X-MBX-APIKEY value (optional).
local threads = 0
function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end

function init(args)
  local key = nil
  local key_file = os.getenv("APIKEY_FILE")
  if key_file and key_file ~= "" then key = io.open(key_file):read("*l") end
  local headers = {}
  if key then headers["X-MBX-APIKEY"] = key end
  -- This thread's share only: every n-th line, starting at its index (loading is faster, and
  -- signed pools must stay inside their recvWindow until they are sent).
  local stride = tonumber(os.getenv("WRK_THREADS") or "1")
  reqs = {}
  local n = 0
  for line in io.lines(os.getenv("POOL")) do
    if n % stride == index then
      local method, path = line:match("^(%u+) (.+)$")
      if not method then method, path = "GET", line end
      reqs[#reqs + 1] = wrk.format(method, path, headers)
    end
    n = n + 1
  end
  i = 1
end

function request()
  local r = reqs[i]
  i = i + 1
  if i > #reqs then i = 1 end
  return r
end
