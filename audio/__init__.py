"""Audio: decoding (ffmpeg), built-in sounds, block-wise playback, the ALSA sink.

The only package in loaxa that runs ffmpeg/ffprobe or talks to ALSA.
"""

from pathlib import Path

from ._api import OUTPUT_FORMAT, AudioSink, PcmFormat
from .alsa import AlsaSink
from .builtin import BUILTIN, builtin_wav
from .ffmpeg import decode_to_wav, duration_s, probe_file
from .player import play_files, volume_gain

# A wheel installs package data as plain files beside the code, so a Path is enough.
DEMO_BULLETIN = Path(__file__).resolve().parent / "data" / "demo-bulletin.ogg"

__all__ = [
    "AlsaSink", "AudioSink", "BUILTIN", "DEMO_BULLETIN", "OUTPUT_FORMAT", "PcmFormat",
    "builtin_wav", "decode_to_wav", "duration_s", "play_files", "probe_file", "volume_gain",
]
