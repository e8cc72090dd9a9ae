"""Device simulators on pseudo-terminals: the real drivers talk to them as to hardware.

Each one can be told to fail (`fail(...)`) and to recover (`clear()`), so tests and
the demo can show faults: amplifier protect, a serial adapter unplugged, GPS lost,
no mobile signal.
"""

from ._pty import PtySimulator
from .amplifier import AmplifierSimulator
from .gps import GpsSimulator
from .modem import ModemSimulator
from .route import Route, RouteError, RouteFault, load_route, parse_faults, parse_gpx

__all__ = ["AmplifierSimulator", "GpsSimulator", "ModemSimulator", "PtySimulator", "Route", "RouteError",
           "RouteFault", "load_route", "parse_faults", "parse_gpx"]
