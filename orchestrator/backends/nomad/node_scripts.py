"""What the platform's scripts on a Nomad node share: a client of the node's Docker API over its socket.

The scripts run as ``python3 -c`` in tasks of the platform's own jobs (the tenant network's prestart
task, the volume job). Nomad replaces ${...} in a task's args at run time, so no script text may hold
a dollar-brace pair.
"""

from __future__ import annotations

__all__ = ["ENGINE_API"]

# ``api(method, path, body)`` answers (status, the JSON body, or its text when it is not JSON).
ENGINE_API = r"""
import http.client, json, socket
class Engine(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/var/run/docker.sock")
def api(method, path, body=None):
    c = Engine("engine", timeout=60)
    c.request(method, path, body=None if body is None else json.dumps(body),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    try:
        return r.status, json.loads(data) if data else None
    except ValueError:
        return r.status, data.decode("utf-8", "replace")
"""
