"""Fuzzing the JPEG reader: mutated JPEGs through every backend end in a JpegError or a valid
JpegCoefficients; never a crash, another exception, or a hang. Where both backends accept a file they read
the same coefficients; where only one does, the other's reason is one of the documented differences
(docs/jpeg-reader.md, "Differences between the backends").

The mutations run in a child process (this file is also the worker script) so that a segfault or an
exit() inside C code fails the test with the input that caused it instead of killing pytest. The default
suite runs SHORT_MUTANTS of them; `pytest -m slow tests/jpeg/test_fuzz.py` runs N_MUTANTS.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

N_MUTANTS = 3000
SHORT_MUTANTS = 300
PER_CALL_LIMIT_S = 5.0  # generous: the CI machine is shared; a real hang blows far past it

# Why one backend refuses a file the other accepts (libjpeg 6b in jpeglib vs the system libjpeg-turbo),
# by the refusing backend's message: docs/jpeg-reader.md lists each case and why.
KNOWN_DIFFERENCES = {
    "was not defined": "missing Huffman table (turbo uses the standard tables)",
    "extraneous bytes before marker": "junk before a marker, counted by one decoder only",
    "bad Huffman code": "bad Huffman code seen by libjpeg 6b only",
    "Bogus DAC": "arithmetic-coding table checked by libjpeg-turbo only",
    "Invalid component ID": "scan component checked by libjpeg-turbo only",
}


def difference_class(message: str) -> str:
    """The KNOWN_DIFFERENCES entry a refusing backend's message belongs to, else "other: <message>"."""
    for pattern, what in KNOWN_DIFFERENCES.items():
        if pattern in message:
            return what
    return f"other: {message[:200]}"


def _same_coefficients(a, b) -> bool:
    if (a.cbcr is None) != (b.cbcr is None):
        return False
    return (
        np.array_equal(a.y, b.y)
        and np.array_equal(a.qt, b.qt)
        and (a.cbcr is None or np.array_equal(a.cbcr, b.cbcr))
        and (a.height, a.width, a.subsampling, a.progressive)
        == (b.height, b.width, b.subsampling, b.progressive)
    )


def _seeds() -> list[bytes]:
    from PIL import Image

    out = []
    rng = np.random.default_rng(0)
    # The last size is wider than 8 luma and chroma blocks: the extension's SIMD copy runs on it.
    for i, (h, w) in enumerate([(16, 16), (33, 47), (24, 40), (9, 17), (40, 136)]):
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.clip(
            np.stack([xx * 9, yy * 5, xx + yy], -1) % 256 + rng.integers(-25, 25, (h, w, 3)), 0, 255
        )
        img = Image.fromarray(rgb.astype(np.uint8))
        for sub, prog, mode in [
            (2, False, "RGB"),
            (1, True, "RGB"),
            (0, i % 2 == 0, "RGB"),
            (2, i % 2 == 1, "L"),
        ]:
            buf = io.BytesIO()
            kwargs = {"quality": 60 + 10 * i, "progressive": prog, "optimize": i % 2 == 1}
            if mode == "RGB":
                kwargs["subsampling"] = sub
            (img if mode == "RGB" else img.convert("L")).save(buf, format="JPEG", **kwargs)
            out.append(buf.getvalue())
    return out


def _marker_offsets(data: bytes) -> list[int]:
    return [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] not in (0x00, 0xFF)]


def _segment(data: bytes, start: int) -> bytes:
    marker = data[start + 1]
    if marker in (0xD8, 0xD9, 0x01) or 0xD0 <= marker <= 0xD7 or start + 4 > len(data):
        return data[start : start + 2]
    return data[start : start + 2 + int.from_bytes(data[start + 2 : start + 4], "big")]


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random mutation of `data`: (what was done, result)."""
    kind = rng.choice(
        [
            "bitflip",
            "truncate",
            "run",
            "insert",
            "marker-swap",
            "marker-dup",
            "marker-drop",
            "header-byte",
            "stack",
        ]
    )
    b = bytearray(data)
    n = len(b)
    if n < 4:  # a stacked mutation already cut it to nothing
        return str(kind), data
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(0, n))
            b[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == "truncate":
        b = b[: int(rng.integers(0, n))]
    elif kind == "run":
        pos, length = int(rng.integers(0, n)), int(rng.integers(1, 64))
        b[pos : pos + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    elif kind == "insert":
        pos = int(rng.integers(0, n))
        junk = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
        if rng.random() < 0.5:
            junk = b"\xff" + bytes([int(rng.integers(0xC0, 0x100))]) + junk
        b[pos:pos] = junk
    elif kind in ("marker-swap", "marker-dup", "marker-drop"):
        offsets = _marker_offsets(data)
        if not offsets:
            return str(kind), data
        first = int(rng.choice(offsets))
        seg = _segment(data, first)
        if kind == "marker-drop":
            b = bytearray(data[:first] + data[first + len(seg) :])
        elif kind == "marker-dup":
            pos = int(rng.choice(offsets))
            b = bytearray(data[:pos] + seg + data[pos:])
        else:
            second = int(rng.choice(offsets))
            seg2 = _segment(data, second)
            lo, hi = sorted([(first, seg), (second, seg2)])
            if lo[0] + len(lo[1]) <= hi[0]:
                b = bytearray(
                    data[: lo[0]]
                    + hi[1]
                    + data[lo[0] + len(lo[1]) : hi[0]]
                    + lo[1]
                    + data[hi[0] + len(hi[1]) :]
                )
    elif kind == "header-byte":
        # Header fields (sizes, sampling factors, table ids, lengths) live in the first few hundred bytes.
        pos = int(rng.integers(2, min(n, 700)))
        b[pos] = int(rng.choice([0, 1, 2, 0x11, 0x22, 0x44, 0x80, 0xFF, int(rng.integers(0, 256))]))
    else:
        return mutate(mutate(data, rng)[1], rng)
    return str(kind), bytes(b)


def _check_contract(coef) -> None:
    hb, wb = 2 * math.ceil(coef.height / 16), 2 * math.ceil(coef.width / 16)
    if coef.y.shape != (64, hb, wb) or coef.y.dtype != np.int16:
        raise AssertionError(f"y {coef.y.shape} {coef.y.dtype} for {coef.height}x{coef.width}")
    if coef.cbcr is not None and (coef.cbcr.shape != (128, hb // 2, wb // 2) or coef.cbcr.dtype != np.int16):
        raise AssertionError(f"cbcr {coef.cbcr.shape} {coef.cbcr.dtype}")
    if coef.qt.shape != (3, 64) or coef.qt.dtype != np.uint16:
        raise AssertionError(f"qt {coef.qt.shape} {coef.qt.dtype}")


def run_worker(out_dir: Path, count: int, seed: int) -> dict:
    """Fuzz `count` mutants through every backend; the current input is kept in out_dir for post-mortems."""
    from dctq.common.errors import JpegError
    from dctq.jpeg.reader import available_backends, read_jpeg

    # A numeric accident on the way (division by a zero table entry, overflow) is a bug, not a result.
    warnings.simplefilter("error", RuntimeWarning)
    backends = available_backends()
    seeds = _seeds()
    originals = [read_jpeg(s) for s in seeds]
    rng = np.random.default_rng(seed)
    stats: dict = {
        "backends": backends,
        "count": count,
        "outcomes": {},
        "kinds": {},
        "disagree": 0,
        "outcome_differs": {},
        "difference_classes": {},
        "accepted_by_one_intact": 0,
    }
    worst = 0.0
    current = out_dir / "current.jpg"
    start = time.perf_counter()
    for i in range(count):
        kind, data = mutate(seeds[i % len(seeds)], rng)
        stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
        current.write_bytes(data)
        allow = i % 5 == 0
        results, messages = {}, {}
        for backend in backends:
            (out_dir / "where.txt").write_text(f"{i} {kind} {backend} allow_truncated={allow}")
            t0 = time.perf_counter()
            try:
                coef = read_jpeg(data, backend=backend, allow_truncated=allow)
                _check_contract(coef)
                outcome = "ok"
                results[backend] = coef
            except JpegError as exc:
                outcome = type(exc).__name__
                results[backend] = outcome
                messages[backend] = str(exc)
            took = time.perf_counter() - t0
            worst = max(worst, took)
            if took > PER_CALL_LIMIT_S:
                raise AssertionError(f"input {i} ({kind}) took {took:.1f} s with {backend}")
            stats["outcomes"][outcome] = stats["outcomes"].get(outcome, 0) + 1
        kinds = {r if isinstance(r, str) else "ok" for r in results.values()}
        if len(kinds) > 1:
            key = " vs ".join(f"{b}:{r if isinstance(r, str) else 'ok'}" for b, r in results.items())
            stats["outcome_differs"][key] = stats["outcome_differs"].get(key, 0) + 1
            for message in messages.values():
                what = difference_class(message)
                stats["difference_classes"][what] = stats["difference_classes"].get(what, 0) + 1
            accepted = next(r for r in results.values() if not isinstance(r, str))
            # Did the backend that accepted the damaged file read the undamaged file's coefficients?
            stats["accepted_by_one_intact"] += _same_coefficients(accepted, originals[i % len(seeds)])
        oks = [r for r in results.values() if not isinstance(r, str)]
        if len(oks) == 2 and not _same_coefficients(*oks):
            stats["disagree"] += 1
    stats["worst_call_s"] = round(worst, 4)
    stats["total_s"] = round(time.perf_counter() - start, 2)
    return stats


def _fuzz(tmp_path: Path, count: int, seed: int) -> dict:
    """Run the worker on `count` mutants; fail with the input on a crash or a hang; its stats, checked."""
    where_file = tmp_path / "where.txt"
    try:
        proc = subprocess.run(
            [sys.executable, __file__, str(tmp_path), str(count), str(seed)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker hung at input {where_file.read_text()}; the input is {tmp_path / 'current.jpg'}")
    where = where_file.read_text() if where_file.exists() else "?"
    assert proc.returncode == 0, (
        f"worker died (rc {proc.returncode}) at input {where}; the input is {tmp_path / 'current.jpg'}\n"
        f"{proc.stderr[-3000:]}"
    )
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(stats, indent=1))
    total = sum(stats["outcomes"].values())
    assert total == count * len(stats["backends"])
    assert stats["outcomes"].get("ok", 0) > 0 and len(stats["outcomes"]) > 2  # both paths were exercised
    assert stats["worst_call_s"] < PER_CALL_LIMIT_S
    # Backends may differ on which damaged files they accept (libjpeg 6b vs turbo), but when both
    # accept a file they must read the same coefficients, and every difference is a documented one.
    assert stats["disagree"] == 0
    unknown = [what for what in stats["difference_classes"] if what.startswith("other")]
    assert not unknown, unknown
    return stats


@pytest.mark.slow
def test_fuzz_reader(tmp_path: Path) -> None:
    _fuzz(tmp_path, N_MUTANTS, 1234)


def test_short_fuzz_of_both_backends(tmp_path: Path) -> None:
    """The default suite's share: a few hundred mutants, fixed seed, every backend available here."""
    stats = _fuzz(tmp_path, SHORT_MUTANTS, 7)
    assert stats["count"] == SHORT_MUTANTS and stats["backends"][-1] == "jpeglib"


if __name__ == "__main__":
    print(json.dumps(run_worker(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
