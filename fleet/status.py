"""`loaxa fleet status`: every unit the collector has seen, alive or not, with its health.

`state` is what the unit last said on its retained `state` topic (`online`,
`offline` after a clean stop, `lost` from its last will); a unit whose state never
reached the collector shows `unknown`. `last_seen` is the newest message from it
(see fleet/ingest.py). Faults, clock trust, queue and next item come from its last
`health` message; `null` until one arrives.
"""

from datetime import datetime, timezone

from scheduler import expand_groups

__all__ = ["fleet_status", "render_text", "summary"]

SILENT_AFTER_S = 15 * 60  # an `online` unit this long without a word is worth a look


def _iso(epoch: float | None, tz) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz).isoformat(timespec="seconds")


def unit_status(row, now: float, tz) -> dict:
    health = row.health or {}
    return {
        "unit": row.unit, "state": row.state or "unknown", "last_seen": _iso(row.last_seen, tz),
        "silent_s": max(0, round(now - row.last_seen)),
        "faults": health.get("faults") if row.health else None,
        "clock": health.get("clock"), "queue": health.get("queue"), "next": health.get("next"),
        "amp": health.get("amp"), "health_ts": row.health_ts,
        "groups": list(row.groups), "version": row.version, "boot": row.boot, "mock": row.mock,
        "state_ts": row.state_ts,
    }


def fleet_status(store, *, group: str | None = None, now: float | None = None, tz=timezone.utc) -> list[dict]:
    """One dict per unit (sorted by id), optionally only the members of `group`."""
    now = now if now is not None else datetime.now(timezone.utc).timestamp()
    rows = store.units()
    if group:
        rows = [r for r in rows if group in expand_groups(r.groups)]
    return [unit_status(row, now, tz) for row in rows]


def summary(units: list[dict]) -> dict:
    counts = {"units": len(units), "online": 0, "offline": 0, "lost": 0, "unknown": 0}
    for unit in units:
        key = unit["state"] if unit["state"] in counts else "unknown"
        counts[key] += 1
    counts["faulty"] = sum(1 for u in units if u["faults"])
    return counts


def _short(value, width: int) -> str:
    text = "-" if value in (None, "", []) else str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def _next_text(unit) -> str:
    nxt = unit["next"]
    if not isinstance(nxt, dict) or not nxt.get("item"):
        return "-"
    at = nxt.get("at") or ""
    return f"{nxt['item']} {at[11:16]}" if len(at) >= 16 else str(nxt["item"])


def _state_text(unit) -> str:
    if unit["state"] == "online" and unit["silent_s"] >= SILENT_AFTER_S:
        return f"online, silent {unit['silent_s'] // 60} min"
    return unit["state"]


def render_text(units: list[dict]) -> str:
    s = summary(units)
    lines = [f"{s['units']} units: {s['online']} online, {s['offline']} offline, {s['lost']} lost, "
             f"{s['unknown']} unknown; {s['faulty']} with faults"]
    if units:
        lines.append(f"{'UNIT':<28} {'STATE':<24} {'LAST SEEN':<25} {'CLOCK':<9} {'QUEUE':>5}  "
                     f"{'NEXT':<22} FAULTS")
    for u in units:
        faults = ", ".join(str(f) for f in u["faults"]) if u["faults"] else "-"
        lines.append(f"{_short(u['unit'], 28):<28} {_short(_state_text(u), 24):<24} "
                     f"{_short(u['last_seen'], 25):<25} {_short(u['clock'], 9):<9} {_short(u['queue'], 5):>5}  "
                     f"{_short(_next_text(u), 22):<22} {faults}")
    return "\n".join(lines)
