"""The operator side: talking to the provincial broker (collector and reports come later)."""

from fleet.broker import BrokerOptions, add_broker_arguments, broker_options, publish, read_retained

__all__ = ["BrokerOptions", "add_broker_arguments", "broker_options", "publish", "read_retained"]
