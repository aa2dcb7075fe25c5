"""Acceptance tests of the command line as an outsider uses it: real ``fhir-gateway`` processes.

Each test runs the installed command and judges only exit codes, stdout/stderr and the files or
HTTP answers it produces (the issues' public interface), never internals.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import BIN

GW = str(BIN / "fhir-gateway")


def gw(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([GW, *args], capture_output=True, text=True, input=stdin,
                          timeout=timeout)


def assert_usage_error(res: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 with a plain message, never a Python traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in res.stderr, res.stderr


# -- synth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [["--patients", "0"], ["--patients", "-1"],
                                 ["--patients", "2", "--messy", "2"],
                                 ["--patients", "2", "--messy", "-0.1"],
                                 ["--patients", "2", "--years", "0"],
                                 ["--patients", "2", "--workers", "-1"]])
def test_synth_invalid_values_are_usage_errors(tmp_path, bad):
    res = gw("synth", "--out", str(tmp_path / "s"), *bad, "--no-progress")
    assert_usage_error(res, "synth:")
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_synth_out_is_a_file_or_non_empty_folder(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_usage_error(gw("synth", "--out", str(afile), "--patients", "1"), "afile")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    assert_usage_error(gw("synth", "--out", str(full), "--patients", "1"), "not empty")


def test_synth_manifest_in_a_new_folder_and_manifest_that_is_a_folder(tmp_path):
    man = tmp_path / "reports" / "defects.json"
    res = gw("synth", "--out", str(tmp_path / "s"), "--patients", "2", "--years", "1",
             "--messy", "0.2", "--manifest", str(man), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert man.is_file() and man.read_text().startswith("[")
    res = gw("synth", "--out", str(tmp_path / "t"), "--patients", "2", "--years", "1",
             "--messy", "0.2", "--manifest", str(tmp_path), "--no-progress")
    assert_usage_error(res, "--manifest")


def test_synth_heavy_patient_alone(tmp_path):
    res = gw("synth", "--out", str(tmp_path / "s"), "--patients", "0", "--heavy-patient",
             "--years", "1", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "s" / "900" / "000" / "9000000001").is_dir()


# -- index ----------------------------------------------------------------------------------------


def test_index_never_empties_itself_on_an_unmounted_storage_root(tmp_path):
    """An unmounted mount point is an empty folder: indexing it must be skipped (exit 1), not
    remove every patient from the index (docs/drills.md treats an empty root the same way)."""
    from conftest import build_hospital
    h = build_hospital(tmp_path, n_patients=3)
    args = ["index", "--storage", str(h.root), "--facility", h.facility, "--data-dir",
            str(h.data_dir)]
    res = gw(*args)
    assert res.returncode == 0 and "3 patients indexed" in res.stdout, res.stdout
    h.root.rename(tmp_path / "unmounted")
    h.root.mkdir()
    for extra in ([], ["--rebuild"]):
        res = gw(*args, *extra)
        assert res.returncode == 1, res.stdout
        assert "skipped" in res.stdout and "empty" in res.stdout
    h.root.rmdir()
    (tmp_path / "unmounted").rename(h.root)
    res = gw(*args)
    assert res.returncode == 0 and "3 patients indexed" in res.stdout, res.stdout
    assert " 0 removed" in res.stdout  # (young mtimes may re-read patients; none was dropped)
    res = gw("index", "--storage", str(tmp_path / "absent"), "--facility", h.facility,
             "--data-dir", str(tmp_path / "d2"))
    assert res.returncode == 1 and "skipped" in res.stdout


# -- check ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drill_tree(tmp_path_factory):
    from conftest import build_hospital
    return build_hospital(tmp_path_factory.mktemp("acc-check"), n_patients=2)


@pytest.mark.parametrize("since", ["2026-02-30", "2026-13-01", "20230230", "yesterday"])
def test_check_since_must_be_a_real_date(drill_tree, since):
    res = gw("check", "--storage", str(drill_tree.root), "--since", since, "--json",
             "--data-dir", str(drill_tree.data_dir))
    assert_usage_error(res, "--since")
    assert res.stdout == ""


@pytest.mark.parametrize("doc", ["[1]", "{}", '{"facilities": 3}', '{"facilities": [1]}',
                                 '{"facilities": [{"digests": 5}]}'])
def test_check_previous_that_is_not_a_report_is_a_usage_error(drill_tree, tmp_path, doc):
    prev = tmp_path / "prev.json"
    prev.write_text(doc)
    res = gw("check", "--storage", str(drill_tree.root), "--previous", str(prev), "--json",
             "--data-dir", str(drill_tree.data_dir))
    assert_usage_error(res, "prev.json")


def test_check_previous_diff_after_adding_and_deleting_files(tmp_path):
    import json
    import shutil

    from conftest import build_hospital
    h = build_hospital(tmp_path / "h", n_patients=2)
    first = tmp_path / "r1.json"
    html = tmp_path / "r1.html"
    res = gw("check", "--storage", str(h.root), "--output", str(first), "--html", str(html),
             "--data-dir", str(h.data_dir))
    assert res.returncode in (0, 1), res.stderr
    page = html.read_text(encoding="utf-8")
    assert "<html" in page and "<script" not in page
    import re
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page
    files = sorted(p for p in h.root.rglob("*") if p.is_file())
    gone = files[0]
    gone.unlink()
    added = files[1].with_name(files[1].name[:-1] + "2")
    shutil.copy(files[1], added)
    res = gw("check", "--storage", str(h.root), "--previous", str(first), "--json",
             "--data-dir", str(h.data_dir))
    assert res.returncode in (0, 1), res.stderr
    diff = json.loads(res.stdout)["facilities"][0]["diff"]
    rel = lambda p: p.relative_to(h.root).as_posix()  # noqa: E731
    assert diff["paths"]["disappeared"] == [rel(gone)]
    assert diff["paths"]["appeared"] == [rel(added)]
    assert diff["counts"]["changed"] == 0


# -- serve ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [["--port", "99999"], ["--port", "-1"], ["--workers", "0"],
                                 ["--threads", "0"], ["--cache-mb", "0"]])
def test_serve_out_of_range_options_are_usage_errors(drill_tree, bad):
    res = gw("serve", "--config", str(drill_tree.config), *bad, timeout=30)
    assert_usage_error(res, bad[0])


def test_serve_on_a_port_in_use_says_so(drill_tree):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = gw("serve", "--config", str(drill_tree.config), "--port", str(port),
                 "--workers", "1", timeout=30)
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr and f"{port}" in res.stderr
