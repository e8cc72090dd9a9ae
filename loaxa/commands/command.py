"""`loaxa command send`: sign a command and publish it to a unit or a group.

    loaxa command send --key KEY.key --to unit:ID|group:PATH ACTION [ARGS...]

ARGS are the command's `args`, given either as one JSON object or as NAME=VALUE
pairs. A VALUE is read as JSON when it is valid JSON (`80`, `true`, `["chime"]`,
`"06"`), else as plain text; `media` and `zones` are lists, so `media=chime,ban-tin`
and `zones=1,2` are accepted too. The document is checked exactly as a unit will
check it (scheduler.command.build_command) before it is signed, so a typo fails
here, not in the field.

The command is published once, not retained (QoS 1), to the target's `cmd` topic,
with a lifetime of --ttl seconds. With --wait, the replies (`loaxa/unit/+/reply`
naming this command's id) are gathered for that many seconds, or until the one unit
of a `unit:` target answers.
"""

import argparse
import json
import sys
from datetime import datetime, timezone

from fleet import add_broker_arguments, broker_options, publish, publish_and_listen
from loaxa.commands._args import target_arg
from loaxa.errors import DocumentError
from loaxa.commands._signing import add_passphrase_arguments, load_signing_key
from loaxa.commands._trustcheck import add_trust_arguments, check_before_publish
from scheduler import ACTIONS, build_command, parse_target, sign_document, target_topic

LIST_ARGS = ("media", "zones")
DEFAULT_TTL_S = 300

EPILOG = """\
ARGS, per action (SPEC "Commands"):
  play        media=chime,ban-tin           media ids of the schedules in force (or chime, test-tone)
              url=https://... sha256=HEX    one file, checked against its SHA-256
              stream=http://... duration_s=1800   relay a live stream
              optional: priority=normal|priority|emergency (default priority), volume=0-100, zones=1,2
  set_volume  volume=0-100
  stop, ping, sync, selftest   no args

Give ARGS as NAME=VALUE pairs (a VALUE that is valid JSON is read as JSON, e.g.
volume=80, zones=[1,2]; anything else is text) or as one JSON object:
  loaxa command send --key keys/operator.key --to group:dak-lak/lak play media=chime,ban-tin volume=90
  loaxa command send --key keys/operator.key --to unit:dl-lak-bongkrang-01 set_volume '{"volume": 60}'
  loaxa command send --key keys/operator.key --to unit:dl-lak-bongkrang-01 --wait 10 selftest

Exit 0 when the broker accepted the command (and with --wait, every reply said ok,
and a unit: target replied); 1 otherwise; 2 for bad usage.
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"expected seconds, more than 0 and at most 86400, got {text!r}")
    return value


def _action(text: str) -> str:
    if text not in ACTIONS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(ACTIONS)}, got {text!r}")
    return text


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "command", help="send signed commands to units",
        description="Signed commands to one unit or a group: play, stop, set_volume, ping, sync, selftest.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "send", help="sign and send one command",
        description="Sign ACTION with ARGS using KEY and publish it (QoS 1, not retained) to the "
                    "command topic of --to. Units act on it only while it has not expired (--ttl) "
                    "and only once (they remember its id).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", type=_action, metavar="ACTION", help=f"one of {', '.join(ACTIONS)}")
    p.add_argument("args", nargs="*", metavar="ARGS", help="NAME=VALUE ... or one JSON object (see below)")
    p.add_argument("--key", required=True, metavar="KEY.key", help="the operator's private key")
    p.add_argument("--to", required=True, type=target_arg, metavar="unit:ID|group:PATH",
                   help="the unit or group to command")
    p.add_argument("--ttl", type=_seconds, default=DEFAULT_TTL_S, metavar="SECONDS",
                   help=f"the command expires this long after now (default {DEFAULT_TTL_S})")
    p.add_argument("--id", dest="command_id", metavar="ID",
                   help="the command id (default: a new uuid); a unit refuses an id it has seen")
    p.add_argument("--wait", type=_seconds, metavar="SECONDS",
                   help="wait this long for replies and print them")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_broker_arguments(p)
    add_passphrase_arguments(p, new_key=False)
    add_trust_arguments(p)
    p.set_defaults(func=send)


# ---- ARGS ----

def _value(name: str, text: str):
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if name in LIST_ARGS and not isinstance(value, list):
        parts = text.split(",") if isinstance(value, str) else [text]
        value = [_value("", part.strip()) for part in parts if part.strip()]
    return value


def parse_args_list(words: list[str]) -> dict:
    """ARGS as given on the command line -> the `args` object. DocumentError says what is wrong."""
    if len(words) == 1 and words[0].lstrip().startswith("{"):
        try:
            args = json.loads(words[0])
        except ValueError as exc:
            raise DocumentError(f"ARGS: not a JSON object: {exc}") from exc
        if not isinstance(args, dict):
            raise DocumentError("ARGS: expected a JSON object")
        return args
    args = {}
    for word in words:
        name, sep, text = word.partition("=")
        if not sep or not name:
            raise DocumentError(f"ARGS: expected NAME=VALUE or one JSON object, got {word!r}")
        if name in args:
            raise DocumentError(f"ARGS: {name} given twice")
        args[name] = _value(name, text)
    return args


# ---- send ----

def _reply_topic(prefix: str, target: str) -> str:
    kind, name = parse_target(target)
    return f"{prefix}/unit/{name}/reply" if kind == "unit" else f"{prefix}/unit/+/reply"


def _replies_for(command_id: str):
    def accept(topic: str, payload: bytes) -> bool:
        try:
            doc = json.loads(payload)
        except ValueError:
            return False
        return isinstance(doc, dict) and doc.get("command") == command_id
    return accept


def _reply_rows(found) -> list[dict]:
    rows = []
    for topic, payload in found:
        doc = json.loads(payload)
        rows.append({"unit": topic.split("/")[-2], "ok": doc.get("ok") is True, "detail": doc.get("detail"),
                     "result": doc.get("result")})
    return rows


def send(args) -> int:
    options = broker_options(args)
    command_args = parse_args_list(args.args)
    now = datetime.now(timezone.utc).astimezone()
    text = build_command(args.action, command_args, args.to, now=now, ttl_s=args.ttl, command_id=args.command_id)
    doc = json.loads(text)
    name, key = load_signing_key(args.key, args)
    envelope = sign_document(text, key, name)
    topic = target_topic(options.topic_prefix, args.to, kind="cmd")
    check_before_publish(args, envelope, [topic], options.topic_prefix, now=now)
    replies = None
    if args.wait:
        single = parse_target(args.to)[0] == "unit"
        found = publish_and_listen(options, [(topic, envelope, False)], _reply_topic(options.topic_prefix, args.to),
                                   args.wait, accept=_replies_for(doc["id"]),
                                   enough=(lambda f: len(f) >= 1) if single else (lambda f: False))
        replies = _reply_rows(found)
    else:
        publish(options, [(topic, envelope, False)])
    _print(args, doc, topic, name, replies)
    return _exit_code(args, replies)


def _exit_code(args, replies) -> int:
    if replies is None:
        return 0
    if parse_target(args.to)[0] == "unit" and not replies:
        return 1
    return 0 if all(r["ok"] for r in replies) else 1


def _print(args, doc: dict, topic: str, key_name: str, replies) -> None:
    if args.json:
        out = {"command": doc["id"], "action": doc["action"], "args": doc["args"], "target": doc["target"],
               "topic": topic, "key": key_name, "expires_at": doc["expires_at"]}
        if replies is not None:
            out["replies"] = replies
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    print(f"sent {doc['action']} (command {doc['id']}, signed with {key_name}, expires {doc['expires_at']}) "
          f"to {topic}")
    if replies is None:
        return
    for reply in replies:
        result = f" {json.dumps(reply['result'], ensure_ascii=False)}" if reply["result"] else ""
        print(f"  {reply['unit']}: {'ok' if reply['ok'] else 'REFUSED'}: {reply['detail'] or ''}{result}")
    if not replies:
        print(f"  no reply within {args.wait:g} s", file=sys.stderr)
    else:
        print(f"{len(replies)} repl{'y' if len(replies) == 1 else 'ies'}, "
              f"{sum(1 for r in replies if not r['ok'])} refused")
