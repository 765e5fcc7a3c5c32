"""The log's rendering (log.py): enums read as their values in both formats."""

from __future__ import annotations

import io
import json

from l3tol1.core.records import Action, Anomaly, Reason
from l3tol1.log import configure_logging, get_logger


class TestEnumsInLogs:
    def test_console_prints_values_not_reprs(self) -> None:
        """A console line shows an enum, also as a dict key or in a tuple, as its value."""
        out = io.StringIO()
        configure_logging("console", "info", out)
        get_logger().info("summary", kind=Anomaly.ADD_LIVE, anomalies={Anomaly.ADD_LIVE: 3},
                          actions=(Action.ADD,), rejects=[Reason.LATE])  # fmt: skip
        line = out.getvalue()
        assert "<" not in line, line
        assert f"kind={Anomaly.ADD_LIVE.value}" in line
        assert f"anomalies={{'{Anomaly.ADD_LIVE.value}': 3}}" in line
        assert f"actions=({Action.ADD.value},)" in line
        assert f"rejects=['{Reason.LATE.value}']" in line

    def test_json_unchanged(self) -> None:
        """JSON lines carried the values already, and still do."""
        out = io.StringIO()
        configure_logging("json", "info", out)
        get_logger().info("summary", anomalies={Anomaly.ADD_LIVE: 3}, action=Action.ADD)
        record = json.loads(out.getvalue())
        assert record["anomalies"] == {Anomaly.ADD_LIVE.value: 3}
        assert record["action"] == Action.ADD.value
