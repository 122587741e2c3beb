-- wrk script: sends pre-built requests from a file, one per line (`METHOD /path?query`, or a bare
-- path for GET), cycling through it.
-- Each thread loads the whole file and takes every n-th line, so no two threads send the same
-- request. Every request goes through this function, so ping and signed reads cost wrk the same.
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
  reqs = {}
  for line in io.lines(os.getenv("POOL")) do
    local method, path = line:match("^(%u+) (.+)$")
    if not method then method, path = "GET", line end
    reqs[#reqs + 1] = wrk.format(method, path, headers)
  end
  stride = tonumber(os.getenv("WRK_THREADS") or "1")
  i = index + 1
end

function request()
  local r = reqs[i]
  i = i + stride
  if i > #reqs then i = ((i - 1) % stride) + 1 end
  return r
end
