"""The operator side: talking to the provincial broker, the collector, fleet status and reports.

Importing `fleet` needs only paho (a unit's install has it); the database modules
(`fleet.db`, `fleet.store`, `fleet.collector`, `fleet.report`, `fleet.status`) need the
`fleet` extra (SQLAlchemy, psycopg) and are imported by name.
"""

from fleet.broker import (BrokerOptions, add_broker_arguments, broker_options, publish, publish_and_listen,
                          read_retained)
from fleet.errors import FleetError

__all__ = ["BrokerOptions", "FleetError", "add_broker_arguments", "broker_options", "publish",
           "publish_and_listen", "read_retained"]
