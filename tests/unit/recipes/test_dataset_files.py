"""Reading dataset files: confinement that no symlink swap can race (issue 28 item 6),
a size limit named in the refusal, and memory bounded by the numbers read, not the
text (item 8)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from producer.contract.messages import Dataset
from workers.recipes import DatasetError
from workers.recipes.data import ReadLimits, load_dataset, load_file
from workers.training.allowed import Allowed, Refused

INSIDE = "a,b,label\n" + "".join(f"{i},{i % 7},in{i % 2}\n" for i in range(40))
OUTSIDE = "a,b,label\n" + "".join(f"{i},{i % 5},out{i % 2}\n" for i in range(40))


def test_a_racing_symlink_swap_never_gets_an_outside_file_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    sub, held = root / "sub", root / ".held"
    sub.mkdir(parents=True)
    outside.mkdir()
    (sub / "data.csv").write_text(INSIDE)
    (outside / "data.csv").write_text(OUTSIDE)
    outside_sha = hashlib.sha256(OUTSIDE.encode()).hexdigest()
    inside_sha = hashlib.sha256(INSIDE.encode()).hexdigest()
    stop = threading.Event()

    def swapper() -> None:  # root/sub: a folder inside, then a symlink to one outside
        while not stop.is_set():
            sub.rename(held)
            sub.symlink_to(outside)
            time.sleep(0.001)
            sub.unlink()
            held.rename(sub)
            time.sleep(0.001)

    allowed = Allowed(data_roots=(root,))
    read: list[str] = []
    refused = 0
    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            try:
                ref = allowed.dataset(Dataset(uri="sub/data.csv"))
                assert ref is not None
                read.append(load_dataset(ref, label="label").sha256)
            except (Refused, DatasetError):
                refused += 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert outside_sha not in read  # zero jobs trained on the outside file
    assert set(read) <= {inside_sha}
    print(f"\n300 loads under a racing swap: {len(read)} read the inside file, {refused} refused")


def test_a_file_over_the_size_limit_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text(INSIDE)
    ref = Allowed(data_roots=(tmp_path,), max_dataset_bytes=100).dataset(Dataset(uri="data.csv"))
    assert ref is not None
    with pytest.raises(DatasetError, match=r"over the trainer's limit of 100 \(maas trainer"):
        load_dataset(ref, label="label")


def test_max_rows_limits_what_is_read(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(INSIDE)
    data = load_file(path, label="label", limits=ReadLimits(max_rows=10))
    assert data.x.shape == (10, 2)
    assert data.sha256 == hashlib.sha256(INSIDE.encode()).hexdigest()  # of the whole file


def test_jsonl_reads_row_by_row_with_the_same_errors(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"a": i, "b": i * 0.5, "label": "x" if i % 2 else "y"} for i in range(6)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_file(path, label="label")
    assert data.x.shape == (6, 2) and data.classes == ("x", "y")
    path.write_text(json.dumps({"a": "text", "label": 1}) + "\n" + json.dumps({"a": 2, "label": 0}))
    with pytest.raises(DatasetError, match=r"feature column.* a are not numeric"):
        load_file(path, label="label")


MEASURE = """
import resource, sys
from pathlib import Path
from workers.recipes.data import ReadLimits, load_file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
limit = None if sys.argv[2] == "all" else int(sys.argv[2])
data = load_file(Path(sys.argv[1]), label="label", limits=ReadLimits(max_rows=limit))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(data.x.shape[0], (after - before) // 1024)
"""


def peak_growth_mb(path: Path, rows: str) -> tuple[int, int]:
    """(rows loaded, peak RSS growth in MB) of loading ``path`` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), rows],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[3],
        timeout=300,
    )
    loaded, grown = done.stdout.split()
    return int(loaded), int(grown)


@pytest.mark.slow
def test_memory_stays_bounded_by_the_numbers_read(tmp_path: Path) -> None:
    path = tmp_path / "large.csv"
    n = 1_000_000
    with path.open("w") as out:
        out.write("f1,f2,f3,f4,label\n")
        for i in range(n):
            out.write(f"{i % 97},{i % 89}.5,{i % 83},{i % 79},c{i % 3}\n")
    size_mb = path.stat().st_size / 2**20
    loaded, grown = peak_growth_mb(path, "all")
    few, grown_few = peak_growth_mb(path, "1000")
    print(
        f"\n{size_mb:.0f} MB CSV, {n:,} rows: +{grown} MB peak RSS; max_rows 1000: +{grown_few} MB"
    )
    assert loaded == n and few == 1000
    numbers_mb = n * 5 * 8 / 2**20  # the features and labels as 8-byte numbers: 38 MB
    assert grown < 5 * numbers_mb  # the text read as Python strings and floats took 15x
    assert grown_few < 20
