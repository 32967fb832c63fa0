"""results.csv: rows round-trip, a row cut short by a kill is dropped on resume, a fresh run never clobbers an
earlier one, and the progress bar of a resumed run counts what was done before."""

from __future__ import annotations

import io

import pytest

from verifier.bench.outcome import COLUMNS, Outcome
from verifier.bench.store import ResultsFileError, ResultStore
from verifier.progress import Progress


def outcome(name: str, result: str = "unsat", **extra) -> Outcome:
    return Outcome("fam", "net.onnx", f"{name}.vnnlib", result=result, runtime_s=1.25, **extra)


def test_rows_round_trip(tmp_path):
    store = ResultStore(tmp_path / "results.csv")
    assert store.open() == {}
    first = outcome("a", "sat", timeout_s=60.0, verify_s=0.5, witness="valid", domains=7, exit_code=0,
                    message="two\nlines, with \"quotes\"", stats={"phases": {"attack": 0.1}, "method": "x"})
    store.append(first)
    store.append(outcome("b", "error", message="exit code 1: boom"))
    loaded = store.load()
    assert list(loaded) == [first.key, outcome("b").key]
    again = loaded[first.key]
    assert (again.result, again.runtime_s, again.timeout_s, again.verify_s, again.domains, again.witness) == \
        ("sat", 1.25, 60.0, 0.5, 7, "valid")
    assert again.message == 'two lines, with "quotes"' and again.stats == first.stats
    assert again.load_s is None and again.prepare_s == 0.0
    header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert header.startswith("category,onnx,vnnlib,prepare_s,result,runtime_s") and header.count(",") == \
        len(COLUMNS) - 1


def test_resume_drops_a_partial_last_row(tmp_path):
    store = ResultStore(tmp_path / "results.csv")
    store.open()
    store.append(outcome("a"))
    with open(store.path, "a") as handle:
        handle.write("fam,net.onnx,b.vnnlib,0,uns")  # the kill came in the middle of this write
    store.close()  # the killed run's lock went with it
    done = ResultStore(store.path).open(resume=True)
    assert list(done) == [outcome("a").key]
    store.append(outcome("b"))
    assert list(store.load()) == [outcome("a").key, outcome("b").key]


def test_existing_results_need_resume_or_overwrite(tmp_path):
    store = ResultStore(tmp_path / "results.csv")
    store.open()
    store.append(outcome("a"))
    store.close()
    with pytest.raises(ResultsFileError, match="already exists; pass --resume"):
        ResultStore(store.path).open()
    assert ResultStore(store.path).open(overwrite=True) == {} and store.load() == {}


def test_one_run_per_folder(tmp_path):
    """A second run on the same folder is refused while the first holds it, and welcome once it has ended."""
    first = ResultStore(tmp_path / "results.csv")
    first.open()
    with pytest.raises(ResultsFileError, match=r"another run \(pid \d+\) is writing to"):
        ResultStore(tmp_path / "results.csv").open(resume=True)
    first.close()
    assert ResultStore(tmp_path / "results.csv").open(resume=True) == {}


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ResultsFileError, match="is a file, not a folder"):
        ResultStore(tmp_path / "taken" / "results.csv").open()


def test_resume_refuses_other_columns(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("category,onnx,vnnlib,prepare_s,result,runtime_s\nfam,a,b,0,unsat,1\n")
    with pytest.raises(ResultsFileError, match="columns differ"):
        ResultStore(path).open(resume=True)
    assert list(ResultStore(path).load()) == [("fam", "a", "b")]  # still readable for reports


def test_progress_of_a_resumed_run():
    stream = io.StringIO()
    with Progress(10, label="bench", stream=stream, enabled=True, interval=0, initial=4) as bar:
        bar.update(1, "solved 5")
    line = stream.getvalue()
    assert "5/10 solved 5" in line and "left ?" not in line
