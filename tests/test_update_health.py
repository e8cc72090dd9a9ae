"""The daemon's side of the health gate: a real unit on trial writes the launcher's health
file only once every part started and the broker link is up."""

import json
import os
import time

from tests.support.unit import OperatorKey, UnitProcess, write_unit_config
from tests.support.updates import wait_for
from updater.health import HEALTH_ENV


def test_a_unit_on_trial_reports_healthy_once_online(tmp_path, broker):
    key = OperatorKey(tmp_path / "keys")
    config = write_unit_config(tmp_path / "unit", unit_id="dl-test-01", groups=["dak-lak/lak"],
                               broker_url=broker.url, trust={key.name: key.public})
    health = tmp_path / "healthy"
    unit = UnitProcess(config, env={**os.environ, HEALTH_ENV: str(health)})
    try:
        wait_for(health.exists, timeout=30, what="the health file")
        assert json.loads(health.read_text())["version"]
    finally:
        assert unit.stop() == 0


def test_a_unit_whose_broker_never_answers_does_not_report(tmp_path, broker):
    key = OperatorKey(tmp_path / "keys")
    url = broker.url
    broker.stop()  # the port is known and nobody answers on it
    config = write_unit_config(tmp_path / "unit", unit_id="dl-test-01", groups=["dak-lak/lak"],
                               broker_url=url, trust={key.name: key.public})
    health = tmp_path / "healthy"
    unit = UnitProcess(config, env={**os.environ, HEALTH_ENV: str(health)})
    try:
        unit.wait_console("connecting to broker", timeout=30)
        time.sleep(3)  # a link that would come up does so well within this on a PC
        assert not health.exists()
    finally:
        unit.stop()
