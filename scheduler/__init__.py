"""Pure schedule logic: keys, signed envelopes, documents, targets, triggers, the store.

Nothing here reads the clock or starts a thread: `now` is always an argument.
The store is the only part that touches files.
"""

from scheduler.command import (ACTIONS, Command, ExpiredError, PlayArgs, build_command, check_time,
                               command_play, parse_command, play_media)
from scheduler.document import (BUILTIN_MEDIA, DAY_NAMES, MAX_DOCUMENT_BYTES, PRIORITIES, Item, Media,
                                Schedule, parse_schedule)
from scheduler.envelope import Envelope, is_envelope, open_envelope, read_envelope, sign_document
from scheduler.keys import (generate_key, is_valid_key_name, load_private_key, load_trusted_keys,
                            parse_public_key, public_key_b64, write_keypair)
from scheduler.store import Offer, ScheduleStore, StorageError
from scheduler.targets import (check_targets, command_topics, expand_groups, parse_target, release_topics,
                               schedule_topics, target_topic, topic_target, unit_targets)
from scheduler.triggers import (ItemTrigger, Occurrence, QuietHours, check_quiet_hours, in_quiet_hours,
                                next_of_item, next_occurrence, occurrences, parse_quiet_hours,
                                quiet_hours_conflicts)

__all__ = [
    "ACTIONS", "Command", "ExpiredError", "PlayArgs", "build_command", "check_time", "command_play",
    "parse_command", "play_media",
    "BUILTIN_MEDIA", "DAY_NAMES", "MAX_DOCUMENT_BYTES", "PRIORITIES",
    "Envelope", "Item", "Media", "Occurrence", "Offer", "QuietHours", "Schedule", "ScheduleStore",
    "StorageError",
    "check_quiet_hours", "check_targets", "command_topics", "expand_groups", "generate_key", "release_topics",
    "ItemTrigger", "in_quiet_hours", "is_envelope", "next_of_item", "is_valid_key_name", "load_private_key", "load_trusted_keys",
    "next_occurrence", "occurrences", "open_envelope", "parse_public_key", "parse_quiet_hours",
    "parse_schedule", "parse_target", "public_key_b64", "quiet_hours_conflicts", "read_envelope",
    "schedule_topics", "sign_document", "target_topic", "topic_target", "unit_targets", "write_keypair",
]
