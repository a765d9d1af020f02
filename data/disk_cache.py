"""An on-disk cache of decoded films, memory-mapped on read, for training sets that do not fit in RAM.

    from calcidet.data.disk_cache import DiskImageCache
    cache = DiskImageCache("coco/.calcidet_cache", image_size=1024)
    cache.build(paths, decode, threads=8)     # decode(i) -> uint8 H x W of paths[i]; progress bar
    image = cache.get(path, lambda: decode(i))  # memory-mapped; rebuilt if missing or corrupt

``RadiographDataset(cache="disk")`` uses it. Each film is one file ``<sha1 of key>.u8``: a 64-byte
header, then the uint8 pixels row by row. One file per film rather than one big file plus an index
because then every write is a single atomic ``os.replace`` that needs no lock and no index update,
ranks and workers never coordinate, and a changed or damaged film costs one small rewrite.

- **Key.** The source's absolute path, size, ``mtime_ns``, ``image_size`` and ``FORMAT_VERSION``:
  editing or replacing a film gives it a new entry. The old one is never read again (delete the folder
  to reclaim its space).
- **Atomic writes.** An entry is written to ``.<name>.<host>.<pid>.<thread>.tmp`` in the same folder, then
  renamed over the entry. A process killed mid-write leaves only a temp file, which no lookup opens;
  temp files older than an hour are removed by the next ``build``.
- **Checked reads.** The header holds the key digest, the shape and a CRC-32 of the pixels. Every
  read checks the file length (truncation) and the CRC (bit flips; ~1 ms per 1024 px film); a bad
  entry is reported with a warning naming the file, decoded again and rewritten, never returned.
  No fsync: a crash can leave a renamed entry whose data never reached the disk, and the checks
  catch that too.
- **Concurrency.** Several ranks or workers on a node may build or repair the same folder at once:
  each writes its own temp file and the last rename wins, with identical content. ``build`` visits
  the films in a random order and skips those already present, so ranks that start together split
  the decoding instead of each doing all of it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import struct
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm import tqdm

log = logging.getLogger("calcidet")

FORMAT_VERSION = 1  # bump when the header or the decode recipe changes: every old entry is then missed
_MAGIC = b"CALCIDC1"
_HEADER = struct.Struct("<8s16sIIIQ")  # magic, key digest, height, width, crc32, payload bytes
HEADER_SIZE = 64  # the struct, zero-padded: pixel rows start on a cache-line boundary
STALE_TEMP_S = 3600.0  # a temp file this old belongs to no live writer


class CacheEntryWarning(UserWarning):
    """A damaged cache entry was found (and is being rebuilt)."""


def _rank() -> int:
    """This process's global rank, from the variables Lightning's own ``rank_zero_only`` reads.

    Lightning itself is not imported: it would add seconds to every import of ``data.dataset``.
    """
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def temp_path(entry: Path) -> Path:
    """Where this thread writes ``entry`` before renaming it; unique per host, process and thread.

    The host is in the name because nodes that share the folder over a network file system can
    reuse each other's process ids.
    """
    return entry.with_name(f".{entry.name}.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}.tmp")


class DiskImageCache:
    """A folder of decoded uint8 films at ``image_size``, keyed by source file and checked on every read.

    Args:
        root: the cache folder (created if missing). Must be writable by every rank.
        image_size: longest side of the cached films; part of the key.
    """

    def __init__(self, root: str | Path, image_size: int) -> None:
        self.root = Path(root)
        self.image_size = image_size
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create the disk cache folder {self.root} ({exc}); set data.cache_dir "
                          f"to a writable folder") from exc

    def _key(self, source: Path) -> tuple[Path, bytes]:
        """(entry path, key digest) of ``source`` as it is now on disk."""
        st = os.stat(source)
        key = f"{os.path.abspath(source)}|{st.st_size}|{st.st_mtime_ns}|{self.image_size}|{FORMAT_VERSION}"
        digest = hashlib.sha1(key.encode()).digest()
        return self.root / f"{digest.hex()}.u8", digest[:16]

    def entry_path(self, source: str | Path) -> Path:
        """The entry file that holds ``source`` in its current version (it may not exist yet)."""
        return self._key(Path(source))[0]

    def _read_header(self, f: BinaryIO, digest: bytes) -> tuple[tuple[int, int, int] | None, str | None]:
        """((height, width, crc32), None) if the header and the file length agree, else (None, problem)."""
        head = f.read(HEADER_SIZE)
        size = os.fstat(f.fileno()).st_size
        if len(head) < HEADER_SIZE:
            return None, f"{size} bytes, shorter than its header"
        magic, key, height, width, crc, length = _HEADER.unpack_from(head)
        if magic != _MAGIC or key != digest:
            return None, "its header belongs to no version of this film"
        if height < 1 or width < 1 or length != height * width or size != HEADER_SIZE + length:
            return None, f"{size} bytes where its header says {height}x{width} ({HEADER_SIZE + length} bytes)"
        return (height, width, crc), None

    def _load(self, entry: Path, digest: bytes) -> tuple[np.ndarray | None, str | None]:
        """(image, None) for a good entry, (None, None) for a missing one, (None, problem) for a bad one."""
        try:
            with open(entry, "rb") as f:
                header, problem = self._read_header(f, digest)
                if header is None:
                    return None, problem
                height, width, crc = header
                # mode "c" (copy-on-write): an in-place transform gets private pages, while the file,
                # shared through the page cache by every rank and worker, never changes
                image = np.memmap(f, dtype=np.uint8, mode="c", offset=HEADER_SIZE, shape=(height, width))
        except FileNotFoundError:
            return None, None
        if zlib.crc32(image) != crc:
            return None, "pixel checksum mismatch"
        return image, None

    def _store(self, entry: Path, digest: bytes, image: np.ndarray) -> None:
        if image.ndim != 2 or image.dtype != np.uint8:
            raise ValueError(f"the disk cache holds uint8 H x W films, got {image.dtype} {image.shape}")
        image = np.ascontiguousarray(image)
        head = _HEADER.pack(_MAGIC, digest, *image.shape, zlib.crc32(image), image.nbytes)
        tmp = temp_path(entry)
        try:
            with open(tmp, "wb") as f:
                f.write(head.ljust(HEADER_SIZE, b"\0"))
                f.write(image.data)
            os.replace(tmp, entry)  # atomic: readers see the old entry, no entry, or all of this one
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put(self, source: str | Path, image: np.ndarray) -> Path:
        """Store ``image`` (uint8 ``H x W`` at ``image_size``) as the entry of ``source``; returns the entry."""
        entry, digest = self._key(Path(source))
        self._store(entry, digest, image)
        return entry

    def _report(self, entry: Path, source: Path, problem: str) -> None:
        warnings.warn(f"disk cache entry {entry} of {source} is damaged ({problem}); decoding the film again",
                      CacheEntryWarning, stacklevel=3)

    def get(self, source: str | Path, decode: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached film of ``source`` (memory-mapped, copy-on-write), decoded and stored if missing or bad.

        Args:
            source: the film's file.
            decode: returns the uint8 ``H x W`` film at ``image_size``; called on a miss.
        """
        source = Path(source)
        try:
            entry, digest = self._key(source)
        except OSError:
            return decode()  # the reader names a missing or unreadable film the way every mode does
        image, problem = self._load(entry, digest)
        if image is not None:
            return image
        if problem is not None:
            self._report(entry, source, problem)
        image = decode()
        self._store(entry, digest, image)
        return image

    def build(self, sources: Sequence[str | Path], decode: Callable[[int], np.ndarray], threads: int = 2) -> int:
        """Make sure every source has an entry, decoding with ``threads`` threads; returns how many were decoded.

        Present entries get the cheap checks only (header, length); the pixel checksum is checked on
        every ``get``. Rank 0 shows a progress bar on stderr (a line every 30 s when it is not a TTY).

        Args:
            sources: the films' files.
            decode: ``decode(i)`` returns the uint8 ``H x W`` film of ``sources[i]`` at ``image_size``.
            threads: decoding threads (the decoders release the GIL).
        """
        self._remove_stale_temps()

        def ensure(i: int) -> bool:
            source = Path(sources[i])
            try:
                entry, digest = self._key(source)
            except OSError:
                decode(i)  # raises the reader's error, which names the film and its image id
                raise
            try:
                with open(entry, "rb") as f:
                    header, problem = self._read_header(f, digest)
                if header is not None:
                    return False
                self._report(entry, source, problem or "")
            except FileNotFoundError:
                pass
            self._store(entry, digest, decode(i))
            return True

        # a random order per process: ranks building together mostly find each other's entries done
        order = np.random.default_rng().permutation(len(sources)).tolist()
        tty = sys.stderr.isatty()
        decoded = 0
        with (ThreadPoolExecutor(max(1, threads)) as pool,
              tqdm(total=len(order), desc=f"disk cache {self.root}", unit="film", file=sys.stderr,
                   mininterval=1.0 if tty else 30.0, disable=_rank() != 0) as bar):
            for made in pool.map(ensure, order):
                decoded += made
                bar.update()
        log.info("disk cache %s: %d films, %d decoded now, %d already there", self.root, len(order), decoded,
                 len(order) - decoded)
        return decoded

    def _remove_stale_temps(self) -> None:
        """Delete temp files of writers that died (older than ``STALE_TEMP_S``); fresh ones may be live."""
        cutoff = time.time() - STALE_TEMP_S
        with os.scandir(self.root) as entries:
            for item in entries:
                if item.name.startswith(".") and item.name.endswith(".tmp"):
                    try:
                        if item.stat().st_mtime < cutoff:
                            os.unlink(item.path)
                    except FileNotFoundError:
                        pass  # another rank removed it first
