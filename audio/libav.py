"""Decoding inside the preparing process with PyAV (FFmpeg's own libraries): the only
module in loaxa that imports `av`.

Preparation (`audio.preparation`) decodes each file twice while numpy measures and
limits it. With the `ffmpeg` command that took a second process of ~52 MB, 47 MB of it
only loading Debian's ffmpeg and its 215 shared libraries; the unit's whole tree
(daemon, preparing child, ffmpeg) then stood at ~129 MB. PyAV's wheels carry a small
FFmpeg build that decodes in the child itself: the child with numpy and PyAV peaks at
~50 MB, and no ffmpeg or ffprobe process runs beside it (docs/performance.md).

The decode is the command's, sample for sample: the same `aresample` with
`rematrix_maxval=1` (a downmix that never exceeds full scale) and `aformat` to the
wanted rate, layout and sample format, and undecodable packets are skipped as the
command skips them. Probe and decoder have the shape of their `audio.ffmpeg` siblings
(`probe_file`, `PcmDecoder`), which stay for what runs without PyAV and for playback
and live streams.
"""

from pathlib import Path

import av

from loaxa.errors import MediaError

from ._api import OUTPUT_FORMAT, PcmFormat
from .ffmpeg import Probe, _check_exists

__all__ = ["LibavDecoder", "probe_file"]

# Raw sample formats a decoder delivers: (FFmpeg's name, bytes per sample).
SAMPLE_FORMATS = {"s16le": ("s16", 2), "f32le": ("flt", 4)}
LAYOUTS = {1: "mono", 2: "stereo"}
# errno texts that say nothing to a technician: what they mean here (as audio.ffmpeg says).
_GENERIC = {"Invalid data found when processing input": "unrecognised or corrupt data",
            "Invalid argument": "unrecognised or corrupt data", "End of file": "unrecognised or corrupt data"}


def _reason(exc: Exception) -> str:
    text = (getattr(exc, "strerror", None) or str(exc)).strip().rstrip(".")
    return _GENERIC.get(text, text) or "unknown error"


def _open(path: Path, what: str):
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path.name}: {what} ({_reason(exc)})") from exc


def _audio_stream(container):
    return next((s for s in container.streams if s.type == "audio"), None)


def probe_file(path) -> Probe:
    """What `audio.ffmpeg.probe_file` finds, read in-process; MediaError unless `path`
    is a file holding an audio stream of a known codec."""
    path = Path(path)
    _check_exists(path)
    container = _open(path, "not a readable audio file")
    try:
        format_name = container.format.name
        stream = _audio_stream(container)
        if stream is None:
            raise MediaError(f"{path.name}: no audio stream (format {format_name})")
        codec = stream.codec_context.name if stream.codec_context is not None else None
        if codec in (None, "none", "unknown"):
            raise MediaError(f"{path.name}: unsupported audio codec in a {format_name} file")
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        return Probe(format_name, codec, duration, stream.codec_context.sample_rate or None)
    finally:
        container.close()


class LibavDecoder:
    """The first audio stream of a file decoded to raw PCM in `fmt`, in this process.

    `sample_format` is "s16le" or "f32le"; `read(nbytes)` gives up to nbytes (fewer only
    at the end, b"" after it); `finish()` and `close()` as `audio.ffmpeg.PcmDecoder`'s
    (close is safe twice). A context manager.
    """

    def __init__(self, source, fmt: PcmFormat = OUTPUT_FORMAT, *, sample_format: str = "s16le",
                 limit_s: float | None = None):
        if sample_format not in SAMPLE_FORMATS or fmt.channels not in LAYOUTS:
            raise MediaError(f"unsupported raw format {sample_format!r} with {fmt.channels} channels")
        self.path, self.fmt = Path(source), fmt
        self.name = self.path.name
        name, width = SAMPLE_FORMATS[sample_format]
        self.bytes_per_frame = width * fmt.channels
        self._left = None if limit_s is None else round(limit_s * fmt.rate) * self.bytes_per_frame
        self._pending = b""
        self._container = _open(self.path, "cannot decode")
        self._closed = False
        try:
            self._stream = _audio_stream(self._container)
            if self._stream is None or self._stream.codec_context is None:
                raise MediaError(f"{self.name}: cannot decode (no audio stream it can read)")
            # One decoding thread: audio decodes far faster than real time on one core, and
            # each extra thread costs its stack and malloc arena in a process kept small.
            self._stream.codec_context.thread_count = 1
            self._graph = self._build_graph(name)
        except BaseException:
            self.close()
            raise
        self._frames = self._decoded()

    def _build_graph(self, sample_format: str):
        graph = av.filter.Graph()
        nodes = [graph.add_abuffer(template=self._stream),
                 graph.add("aresample", "rematrix_maxval=1.0"),
                 graph.add("aformat", f"sample_fmts={sample_format}:channel_layouts={LAYOUTS[self.fmt.channels]}"
                                      f":sample_rates={self.fmt.rate}"),
                 # Frames of 100 ms out instead of an MP3's 24 ms: fewer trips through Python.
                 graph.add("asetnsamples", f"n={max(1, self.fmt.rate // 10)}:p=0"),
                 graph.add("abuffersink")]
        for upstream, downstream in zip(nodes, nodes[1:]):
            upstream.link_to(downstream)
        graph.configure()
        return graph

    def _decoded(self):
        """PCM bytes, chunk by chunk, through the filter graph; bad packets skipped."""
        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue  # a damaged frame: skipped, as the command does; truncation is judged after
            for frame in frames:
                self._graph.push(frame)
                yield from self._pulled()
        self._graph.push(None)
        yield from self._pulled()

    def _pulled(self):
        while True:
            try:
                frame = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            yield bytes(frame.planes[0])[:frame.samples * self.bytes_per_frame]

    def read(self, nbytes: int) -> bytes:
        if self._left is not None:
            nbytes = min(nbytes, self._left)
        chunks, have = [self._pending] if self._pending else [], len(self._pending)
        while have < nbytes:
            try:
                chunk = next(self._frames, None)
            except av.error.FFmpegError as exc:  # the file itself failed (I/O), not one frame
                raise MediaError(f"{self.name}: cannot decode ({_reason(exc)})") from exc
            if chunk is None:
                break
            chunks.append(chunk)
            have += len(chunk)
        joined = b"".join(chunks)
        data, self._pending = joined[:nbytes], joined[nbytes:]
        if self._left is not None:
            self._left -= len(data)
        return data

    def finish(self, timeout: float = 30.0) -> None:
        """Nothing to wait for in-process; kept so the two decoders are used alike."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
