"""Who a document is for: units, groups with their ancestors, and their MQTT topics.

A target is `unit:ID` or `group:PATH`. A unit in group `dak-lak/lak/bong-krang` is
also a member of `dak-lak/lak` and `dak-lak`, and listens on each of their topics.
"""

import re

from loaxa.errors import TargetError

__all__ = ["command_topics", "check_targets", "expand_groups", "parse_target", "schedule_topics",
           "target_topic", "topic_target", "trust_topics", "unit_targets"]

UNIT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{2,63}", re.ASCII)
GROUP_SEGMENT_PATTERN = re.compile(r"[a-z0-9-]+", re.ASCII)
MAX_GROUP_PATH_LENGTH = 255
TOPIC_KINDS = ("schedule", "cmd")


def is_group_path(path: str) -> bool:
    return (isinstance(path, str) and 0 < len(path) <= MAX_GROUP_PATH_LENGTH
            and all(GROUP_SEGMENT_PATTERN.fullmatch(s) for s in path.split("/")))


def parse_target(text: str) -> tuple[str, str]:
    """`unit:ID` -> ("unit", ID); `group:PATH` -> ("group", PATH); ValueError says why not."""
    kind, sep, name = text.partition(":") if isinstance(text, str) else ("", "", "")
    if sep and kind == "unit" and UNIT_ID_PATTERN.fullmatch(name):
        return kind, name
    if sep and kind == "group" and is_group_path(name):
        return kind, name
    shown = text if isinstance(text, str) and len(text) <= 60 else f"{str(text)[:57]}..."
    raise ValueError(f"expected unit:ID (ID [a-z0-9][a-z0-9-]{{2,63}}) or group:PATH "
                     f"(segments [a-z0-9-]+ joined by '/'), got {shown!r}")


def expand_groups(groups) -> list[str]:
    """Each group path followed by its ancestors, once each: a/b/c -> a/b/c, a/b, a."""
    expanded = []
    for path in groups:
        segments = path.split("/")
        for end in range(len(segments), 0, -1):
            ancestor = "/".join(segments[:end])
            if ancestor not in expanded:
                expanded.append(ancestor)
    return expanded


def unit_targets(unit_id: str, groups) -> set[str]:
    """Every target string that names this unit."""
    return {f"unit:{unit_id}"} | {f"group:{path}" for path in expand_groups(groups)}


def target_topic(prefix: str, target: str, kind: str = "schedule") -> str:
    """`unit:X` -> `{prefix}/unit/X/{kind}`; `group:P` -> `{prefix}/group/P/{kind}`."""
    which, name = parse_target(target)
    return f"{prefix}/{which}/{name}/{kind}"


def _topics(prefix: str, unit_id: str, groups, kind: str) -> list[str]:
    return ([f"{prefix}/unit/{unit_id}/{kind}"]
            + [f"{prefix}/group/{path}/{kind}" for path in expand_groups(groups)])


def schedule_topics(prefix: str, unit_id: str, groups) -> list[str]:
    """The unit's own schedule topic, then those of each group and ancestor."""
    return _topics(prefix, unit_id, groups, "schedule")


def command_topics(prefix: str, unit_id: str, groups) -> list[str]:
    """The twin of schedule_topics for signed commands (`/cmd`)."""
    return _topics(prefix, unit_id, groups, "cmd")


def trust_topics(prefix: str, unit_id: str, groups) -> list[str]:
    """The twin of schedule_topics for trust documents (`/trust`, SPEC "Trust")."""
    return _topics(prefix, unit_id, groups, "trust")


def release_topics(prefix: str, unit_id: str, groups) -> list[str]:
    """The twin of schedule_topics for software releases (`/release`)."""
    return _topics(prefix, unit_id, groups, "release")


def topic_target(prefix: str, topic: str, kind: str = "schedule") -> str | None:
    """The target a topic belongs to (`loaxa/group/a/b/schedule` -> `group:a/b`), or None."""
    head, suffix = f"{prefix}/", f"/{kind}"
    if not (isinstance(topic, str) and topic.startswith(head) and topic.endswith(suffix)):
        return None
    which, _, name = topic[len(head):-len(suffix)].partition("/")
    if which not in ("unit", "group"):
        return None
    try:
        parse_target(f"{which}:{name}")
    except ValueError:
        return None
    return f"{which}:{name}"


def check_targets(schedule, unit_id: str, groups, topic: str, prefix: str) -> None:
    """Refuse a document not meant for this unit, or one that arrived on a foreign topic."""
    mine = unit_targets(unit_id, groups)
    named = set(schedule.targets)
    if not named & mine:
        raise TargetError(f"targets {', '.join(schedule.targets)} name neither unit {unit_id} "
                          "nor any of its groups")
    arrived = topic_target(prefix, topic)
    if arrived not in named:
        raise TargetError(f"arrived on {topic}, which is not the topic of any of its targets "
                          f"({', '.join(schedule.targets)})")
    if arrived not in mine:
        raise TargetError(f"arrived on {topic}, which is not one of this unit's topics")
