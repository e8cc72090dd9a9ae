"""Audio: decoding (ffmpeg), loudness preparation, built-in sounds, block-wise
playback, live stream relay, the ALSA sink.

The only package in loaxa that runs ffmpeg/ffprobe or talks to ALSA. docs/audio.md
explains the output format, the loudness chain and the choice of aplay.
"""

import importlib
from pathlib import Path

from ._api import CEILING_DBTP, DEFAULT_LUFS, OUTPUT_FORMAT, PREPARE_VERSION, AudioSink, PcmFormat

# Every other name is imported on first use: `python -m audio.preparation`, the child that
# prepares media for the unit, then loads only what preparing needs (numpy, ffmpeg's
# decoder), not the player, the stream relay or the ALSA sink (memory: the unit's whole
# process tree counts while it prepares). Preparation needs numpy (some 15 MB and a
# noticeable start-up on a Pi), so `loaxa schedule ...` or a unit that only plays never
# pays for it either.
_LAZY = {
    ".alsa": ("AlsaSink", "list_devices"),
    ".builtin": ("BUILTIN", "builtin_wav"),
    ".ffmpeg": ("PcmDecoder", "decode_to_wav", "duration_s", "probe_file"),
    ".player": ("play_files", "volume_gain", "wait_until"),
    ".isolated": ("PrepareCancelled", "PrepareCrashed", "prepare_isolated"),
    ".stream": ("ItemResult", "StreamResult", "play_item", "play_stream"),
    ".preparation": ("Prepared", "prepare"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name):
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
        globals()[name] = value  # once: the next lookup is a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A wheel installs package data as plain files beside the code, so a Path is enough.
DEMO_BULLETIN = Path(__file__).resolve().parent / "data" / "demo-bulletin.ogg"

__all__ = [
    "AlsaSink", "AudioSink", "BUILTIN", "CEILING_DBTP", "DEFAULT_LUFS", "DEMO_BULLETIN",
    "ItemResult", "OUTPUT_FORMAT", "PREPARE_VERSION", "PcmDecoder", "PcmFormat", "PrepareCancelled",
    "PrepareCrashed", "Prepared", "StreamResult", "builtin_wav", "decode_to_wav", "duration_s",
    "list_devices", "play_files", "play_item", "play_stream", "prepare", "prepare_isolated",
    "probe_file", "volume_gain", "wait_until",
]
