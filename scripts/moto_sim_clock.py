"""moto's server on a simulated clock, for make demo.

    moto_sim_clock.py OFFSET_FILE HOST PORT

The demo moves time by writing an offset in seconds (``+123`` / ``-456``,
libfaketime's format: the function processes read the same file through
libfaketime) to OFFSET_FILE. Before each request this server checks the
file and, when it changed, moves its clock there with ``time-machine``, so
EC2 (moto) stamps what it creates with the simulated time. A stat per
request, not a file read per clock reading as libfaketime would cost
moto, which reads the clock hundreds of times per request.

moto is patched by scripts/moto_ebs_fixes.py, as for the tests.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import moto_ebs_fixes  # noqa: E402,F401  (applies the fixes on import)
import time_machine  # noqa: E402
from moto.moto_server.werkzeug_app import DomainDispatcherApplication  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

offset_file, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
_lock = threading.Lock()
_state = {"mtime": None, "traveller": None}
_real_time = time.time  # bound before any travel


def _follow_offset() -> None:
    try:
        mtime = os.stat(offset_file).st_mtime_ns
    except FileNotFoundError:
        return
    if mtime == _state["mtime"]:
        return
    with _lock:
        if mtime == _state["mtime"]:
            return
        with open(offset_file) as f:
            offset = int(f.read().strip() or 0)
        if _state["traveller"] is not None:
            _state["traveller"].stop()
        traveller = time_machine.travel(_real_time() + offset, tick=True)
        traveller.start()
        _state["traveller"], _state["mtime"] = traveller, mtime


_dispatch = DomainDispatcherApplication.__call__


def _dispatch_on_simulated_time(self, environ, start_response):  # type: ignore[no-untyped-def]
    _follow_offset()
    return _dispatch(self, environ, start_response)


DomainDispatcherApplication.__call__ = _dispatch_on_simulated_time

# MOTO_REQUEST_STATS=FILE: every 200 requests (and at exit), the requests
# served so far by service and action, and by the simulated time of day at
# which they came (the demo runs each function at its own time of day), with
# the seconds spent in each (the handler and its serialisation, not the HTTP
# exchange): where the demo's time goes (docs/development.md, "The demo").
_stats_file = os.environ.get("MOTO_REQUEST_STATS")
if _stats_file:
    import atexit
    import collections
    import json

    from moto.core.responses import BaseResponse

    _stats: dict = collections.defaultdict(lambda: [0, 0.0])
    _steps: dict = collections.defaultdict(lambda: [0, 0.0])
    _call_action = BaseResponse.call_action

    def _write_stats() -> None:
        with _lock:
            tables = {name: sorted(table.items(), key=lambda kv: -kv[1][1])
                      for name, table in (("by_action", _stats), ("by_time_of_day", _steps))}
        with open(_stats_file, "w") as f:
            json.dump({name: {k: {"requests": n, "seconds": round(s, 3)} for k, (n, s) in rows}
                       for name, rows in tables.items()}, f, indent=1)

    def _timed_call_action(self):  # type: ignore[no-untyped-def]
        begun = time.perf_counter()
        try:
            return _call_action(self)
        finally:
            spent = time.perf_counter() - begun
            key = f"{type(self).__name__}.{self._get_action()}"
            step = time.strftime("%H:%M", time.gmtime())
            with _lock:
                for entry in (_stats[key], _steps[step]):
                    entry[0] += 1
                    entry[1] += spent
                total = sum(n for n, _ in _stats.values())
            if total % 200 == 0:
                _write_stats()

    BaseResponse.call_action = _timed_call_action
    atexit.register(_write_stats)

server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
server.start()
# The port it listens on, for a caller that gave 0 (the OS picks a free
# one at bind time: no window in which another server can take it).
print(f"port {server.get_host_and_port()[1]}", flush=True)
try:
    threading.Event().wait()
except KeyboardInterrupt:
    pass
finally:
    server.stop()
