"""The trust in force on a unit, persisted; and the mark that trust was ever in force.

Layout (every write atomic and durable, `loaxa.fsio`):
- `FOLDER/trust.json`: `{"format": 1, "topic": ..., "envelope": "<raw envelope>"}`, the
  trust document in force, kept exactly as it arrived;
- `MARK` (default: `trust-mark.json` beside FOLDER, deliberately outside it):
  `{"format": 1, "version", "digest", "roots": {"keys", "threshold"}, "since"}`, written
  before the document: trust was in force (never fall back to legacy keys), the highest
  trust version accepted with its payload digest (no rollback), and the roots in force
  (persisted roots win over the config's).

If the document is lost or damaged while the mark stays, the unit accepts nothing new
(`Authority.nothing()`) until a trust document verified by the persisted roots arrives;
the retained copy of the very version in force is taken back then, even if it has
expired meanwhile (a document in force that expires stays in force).
"""

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from loaxa.errors import LoaxaError
from loaxa.fsio import atomic_write
from scheduler._json import encode_utf8
from scheduler.envelope import read_envelope
from scheduler.judge import Authority
from scheduler.store import StorageError
from scheduler.trust import RootSet, TrustDocument, parse_trust, root_signers, verify_trust

__all__ = ["TrustOffer", "TrustStore"]

log = logging.getLogger("loaxa.scheduler.truststore")

FORMAT = 1
EXPIRED_FAULT = "trust.expired"


@dataclass(frozen=True)
class TrustOffer:
    status: str  # "accepted" | "unchanged" | "empty"
    document: TrustDocument | None
    previous: TrustDocument | None = None
    roots_changed: bool = False


@dataclass(frozen=True)
class _Mark:
    version: int
    digest: str
    roots: RootSet | None  # None only for a damaged mark: the config's roots stand in


class TrustStore:
    def __init__(self, folder, *, mark_path=None, write=atomic_write):
        self.folder = Path(folder)
        self._write = write  # the one place this store writes: a seam for disk-fault tests
        self.mark_path = Path(mark_path) if mark_path is not None else self.folder.parent / "trust-mark.json"
        self._doc_path = self.folder / "trust.json"
        self._lock = threading.RLock()
        self._mark: _Mark | None = None
        self._document: TrustDocument | None = None
        self._topic: str | None = None
        self.load()

    # ---- loading ----
    def load(self) -> None:
        with self._lock:
            self._mark = self._read_mark()
            self._document, self._topic = None, None
            try:
                self._document, self._topic = self._read_document()
            except FileNotFoundError:
                pass
            except (OSError, ValueError, TypeError, KeyError, LoaxaError, RecursionError) as exc:
                log.error("stored trust document %s dropped: %s", self._doc_path, exc)
            if self._document is not None and self._mark is None:
                log.error("trust mark %s missing; no trust document can be proven in force", self.mark_path)
                self._document = None
            if self._mark is not None and self._document is None:
                log.warning("trust was in force on this unit and no trust document is held: nothing new is "
                            "accepted until one verified by the roots arrives")

    def _read_mark(self) -> _Mark | None:
        try:
            data = json.loads(self.mark_path.read_text(encoding="utf-8"))
            roots = RootSet.from_mapping(data["roots"]["keys"], int(data["roots"]["threshold"]))
            return _Mark(int(data["version"]), str(data["digest"]), roots)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # A damaged mark still says trust was in force: never fall back to legacy keys
            # for it. Its roots and version are gone, so the config's roots stand in.
            log.error("trust mark %s is unreadable (%s); trust stays required, roots from the config",
                      self.mark_path, exc)
            return _Mark(0, "", None)

    def _read_document(self) -> tuple[TrustDocument | None, str | None]:
        data = json.loads(self._doc_path.read_text(encoding="utf-8"))
        topic, raw = data["topic"], data["envelope"]
        if not isinstance(topic, str) or not isinstance(raw, str):
            raise ValueError("not a stored trust document")
        envelope = read_envelope(raw.encode("utf-8"))
        doc = parse_trust(envelope.payload)
        if self._mark is None:
            return doc, topic
        if self._mark.roots is None:
            raise ValueError("the trust mark is damaged, so its roots cannot vouch for the document")
        if len(root_signers(envelope, self._mark.roots)) < self._mark.roots.threshold:
            raise ValueError(f"version {doc.version} is not signed at threshold by the persisted roots")
        return doc, topic

    # ---- reading ----
    @property
    def document(self) -> TrustDocument | None:
        with self._lock:
            return self._document

    @property
    def was_in_force(self) -> bool:
        with self._lock:
            return self._mark is not None

    @property
    def version(self) -> int | None:
        """The highest trust version ever accepted here."""
        with self._lock:
            return self._mark.version if self._mark is not None else None

    def roots(self, config_roots: RootSet | None) -> RootSet | None:
        """The roots in force: persisted ones win over the config's."""
        with self._lock:
            if self._mark is not None and self._mark.roots is not None:
                return self._mark.roots
            return config_roots

    def authority(self, legacy: dict) -> Authority:
        """Whose signatures count now: the trust document, nobody (lost), or the legacy keys."""
        with self._lock:
            if self._document is not None:
                return Authority.from_trust(self._document)
            if self._mark is not None:
                return Authority.nothing()
            return Authority.from_legacy(dict(legacy or {}))

    def faults(self, now: datetime, clock_trusted: bool) -> list[str]:
        with self._lock:
            doc = self._document
        return [EXPIRED_FAULT] if doc is not None and clock_trusted and doc.expired(now) else []

    # ---- offering ----
    def offer(self, topic: str, raw, *, config_roots: RootSet | None, legacy: dict | None, min_version: int = 0,
              now: datetime, clock_trusted: bool, unit_id: str, groups, prefix: str = "loaxa") -> TrustOffer:
        """Take a retained trust document into force, or raise a Rejected saying why (nothing changes)."""
        if not raw:
            return TrustOffer("empty", None)
        raw = encode_utf8(raw, "envelope") if isinstance(raw, str) else bytes(raw)
        with self._lock:
            held, mark = self._document, self._mark
            payload_digest = parse_trust(read_envelope(raw).payload).digest
            if held is not None and held.digest == payload_digest:
                return TrustOffer("unchanged", held)
            restoring = mark is not None and mark.digest == payload_digest
            current = None if mark is None else (mark.version - 1 if restoring else mark.version)
            verified = verify_trust(raw, roots=self.roots(config_roots), legacy=None if mark else legacy,
                                    current_version=current, min_version=min_version, now=now,
                                    clock_trusted=clock_trusted and not restoring, unit_id=unit_id, groups=groups,
                                    topic=topic, prefix=prefix)
            doc = verified.document
            self._persist(topic, raw, doc, verified.roots, now)
            changed = mark is None or not verified.roots.same_as(mark.roots or config_roots)
            self._mark = _Mark(doc.version, doc.digest, verified.roots)
            self._document, self._topic = doc, topic
            return TrustOffer("accepted", doc, held, changed)

    def _persist(self, topic: str, raw: bytes, doc: TrustDocument, roots: RootSet, now: datetime) -> None:
        mark = {"format": FORMAT, "version": doc.version, "digest": doc.digest, "roots": roots.to_json(),
                "since": now.isoformat()}
        stored = {"format": FORMAT, "topic": topic, "envelope": raw.decode("utf-8")}
        try:
            self._write(self.mark_path, json.dumps(mark, indent=1).encode("utf-8"))
            self._write(self._doc_path, json.dumps(stored, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:
            raise StorageError(f"trust version {doc.version} could not be stored: {exc.strerror or exc}") from exc
