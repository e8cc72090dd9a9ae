"""Audio: decoding (ffmpeg), loudness preparation, built-in sounds, block-wise
playback, live stream relay, the ALSA sink.

The only package in loaxa that runs ffmpeg/ffprobe or talks to ALSA. docs/audio.md
explains the output format, the loudness chain and the choice of aplay.
"""

from pathlib import Path

from ._api import CEILING_DBTP, DEFAULT_LUFS, OUTPUT_FORMAT, PREPARE_VERSION, AudioSink, PcmFormat
from .alsa import AlsaSink, list_devices
from .builtin import BUILTIN, builtin_wav
from .ffmpeg import PcmDecoder, decode_to_wav, duration_s, probe_file
from .player import play_files, volume_gain, wait_until
from .isolated import PrepareCancelled, PrepareCrashed, prepare_isolated
from .stream import ItemResult, StreamResult, play_item, play_stream

# Preparation needs numpy (some 15 MB and a noticeable start-up on a Pi): imported on
# first use, so `loaxa schedule ...` or a unit that only plays never pays for it.
_LAZY = {name: ".preparation" for name in
         ("Prepared", "prepare")}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
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
