"""Patient index: matching rules, refresh by directory mtimes, no duplicate hits after merges,
readers during writes, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fhir_gateway.cli import main as cli_main
from fhir_gateway.index import PatientIndex
from fhir_gateway.index.lock import WriterLock
from mappers.terminology import patient_identifier_system
from storage.encoding import encode_iso2022jp
from storage.layout import Storage
from storage.names import FileName

FAC = "1312345678"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "ssmix2"
MSH = ("MSH|^~\\&|HIS|SEND|GW|RCV|{ts}||ADT^{ev}^ADT_A01|{ts}|P|2.5||||||~ISO IR87||ISO 2022-1994|"
       "SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120^ISO")

# pid: (kanji family, given, kana family, given, birth, sex)
PEOPLE = {
    "0000000001": ("山田", "太郎", "ヤマダ", "タロウ", "19650415", "M"),
    "0000000002": ("佐藤", "花子", "サトウ", "ハナコ", "19800101", "F"),
    "0000000003": ("鈴木", "一郎", "スズキ", "イチロウ", "19480405", "M"),
    "0000000004": ("山本", "葉子", "ヤマモト", "ヨウコ", "19921231", "F"),
    "0000000005": ("田中", "優", "タナカ", "ユウ", "20010704", "O"),
    "0000000008": ("髙橋", "健一郎", "タカハシ", "ケンイチロウ", "1955", "M"),  # CP932-only 髙
    "0000000009": ("中務", "加奈香", "ナカム", "カナカ", "19700101", "F"),
}
PAST = time.time() - 3600


def adt00_text(pid: str, person: tuple, ts: str, event: str = "A08") -> str:
    fam, giv, kfam, kgiv, birth, sex = person
    return "\r".join([
        MSH.format(ts=ts[:14], ev=event),
        "EVN||201112202100|||||SEND001",
        f"PID|0001||{pid}^^^^PI||{fam}^{giv}^^^^^L^I~{kfam}^{kgiv}^^^^^L^P||{birth}|{sex}",
    ]) + "\r"


def pdir(root: Path, pid: str) -> Path:
    return root.joinpath(*Storage.candidate_dirs(pid)[0])


def write_adt00(root: Path, pid: str, person: tuple, ts: str = "20230101090000000",
                event: str = "A08") -> Path:
    """A new current ADT-00 version: older flag-1 files become flag 2 (as writers do)."""
    d = pdir(root, pid) / "-" / "ADT-00"
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        if f.name.endswith("_1"):
            f.rename(f.with_name(f.name[:-1] + "2"))
    name = FileName(pid, "-", "ADT-00", "999999999999999", ts, "-", "1")
    p = d / name.name
    p.write_bytes(encode_iso2022jp(adt00_text(pid, person, ts, event)) + b"\x1c")
    return p


def add_visit(root: Path, pid: str, day: str) -> None:
    d = pdir(root, pid) / day / "ADT-12"
    d.mkdir(parents=True, exist_ok=True)
    (d / FileName(pid, day, "ADT-12", "999999999999999", day + "0900000", "01", "1").name) \
        .write_bytes(b"MSH|^~\\&|HIS\r\x1c")


def age_tree(root: Path) -> None:
    """Move every directory mtime an hour back, out of the racy window, so a refresh sees only
    the changes a test makes afterwards."""
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, (PAST, PAST))


def make_tree(root: Path) -> Path:
    for pid, person in PEOPLE.items():
        write_adt00(root, pid, person)
        add_visit(root, pid, "20230110")
    add_visit(root, "0000000001", "20240301")
    # 6: an ADT-00 that cannot be read; 7: no ADT-00 at all (visits only).
    bad = pdir(root, "0000000006") / "-" / "ADT-00"
    bad.mkdir(parents=True)
    (bad / FileName("0000000006", "-", "ADT-00", "999999999999999", "20230101090000000", "-",
                    "1").name).write_bytes(b"\x00\x01\x02 binary")
    add_visit(root, "0000000007", "20220505")
    age_tree(root)
    return root


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "ss")


@pytest.fixture()
def index(tree: Path, tmp_path: Path):
    ix = PatientIndex(tmp_path / "data", FAC, [tree])
    ix.build()
    yield ix
    ix.close()


@pytest.fixture(scope="module")
def ro_index(tmp_path_factory):
    """One index for the tests that only read."""
    base = tmp_path_factory.mktemp("ro")
    ix = PatientIndex(base / "data", FAC, [make_tree(base / "ss")])
    ix.build()
    yield ix
    ix.close()


def ids(hits) -> list[str]:
    return [h.patient_id for h in hits]


# -- contents -----------------------------------------------------------------------------------

def test_build_indexes_every_patient_with_summary(index: PatientIndex, tmp_path: Path):
    assert index.count() == 9
    s = index.get("0000000001")
    assert (s.name, s.kana, s.birthdate, s.gender) == ("山田 太郎", "ヤマダ タロウ", "1965-04-15", "male")
    assert s.last_care_date == "2024-03-01"  # the newest date folder
    assert s.updated.startswith("2023-01-01T09:00:00")
    assert s.problem == ""
    assert index.get("0000000008").name == "髙橋 健一郎"
    assert index.get("0000000005").gender == "other"
    assert index.get("nope") is None
    assert (tmp_path / "data" / "index" / FAC / "whoosh").is_dir()


def test_patients_without_usable_adt00_stay_findable(ro_index: PatientIndex):
    bad = ro_index.get("0000000006")
    assert "unreadable" in bad.problem and "binary" in bad.problem
    none = ro_index.get("0000000007")
    assert none.problem == "no ADT-00 file" and none.last_care_date == "2022-05-05"
    assert ids(ro_index.search(identifier="0000000007")) == ["0000000007"]
    assert ids(ro_index.search(text="0000000006")) == ["0000000006"]


# -- names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("query, expected", [
    ("ヤマダ", ["0000000001"]),
    ("やまだ", ["0000000001"]),  # hiragana
    ("ﾔﾏﾀﾞ", ["0000000001"]),  # half-width with a separate voiced mark
    ("ヤマ", ["0000000001", "0000000004"]),
    ("マダ", ["0000000001"]),  # substring
    ("ダ タ", ["0000000001"]),  # across family and given; spaces ignored
    ("ヤ", ["0000000001", "0000000004"]),  # one character: prefix of a name part only
    ("ヨ", ["0000000004"]),  # given-name prefix
    ("マ", []),  # one character inside a name is not a match
    ("ケンイチロウ", ["0000000008"]),  # longer than a gram
    ("たかはし けんいちろう", ["0000000008"]),
    ("イチロウ", ["0000000003", "0000000008"]),
    ("カナカム", []),  # both trigrams occur in ナカムカナカ, the string does not
    ("カナカ", ["0000000009"]),
    ("ヤマダジロウ", []),
])
def test_kana_search(ro_index: PatientIndex, query: str, expected: list[str]):
    assert sorted(ids(ro_index.search(kana=query))) == expected


def test_kanji_substring_and_prefix(ro_index: PatientIndex):
    assert sorted(ids(ro_index.search(name="山"))) == ["0000000001", "0000000004"]
    assert ids(ro_index.search(name="田")) == ["0000000005"]  # prefix of 田中, not of 山田
    assert ids(ro_index.search(name="太郎")) == ["0000000001"]
    assert ids(ro_index.search(name="田太")) == ["0000000001"]
    assert ids(ro_index.search(name="高橋")) == []  # 髙 and 高 are different characters
    assert ids(ro_index.search(name="髙橋")) == ["0000000008"]
    assert ids(ro_index.search(name="ｙａｍａｄａ")) == []


def test_name_matches_kanji_or_kana_family_and_given(ro_index: PatientIndex):
    assert ids(ro_index.search(name="やまだ")) == ids(ro_index.search(name="山田")) == ["0000000001"]
    assert ids(ro_index.search(family="タロウ")) == []
    assert ids(ro_index.search(given="タロウ")) == ["0000000001"]
    assert ids(ro_index.search(given="太郎")) == ["0000000001"]
    assert sorted(ids(ro_index.search(family="山"))) == ["0000000001", "0000000004"]
    assert ids(ro_index.search(kana="山田")) == []  # kana matches the kana name only
    assert sorted(ids(ro_index.search(name="ヤマダ,サトウ"))) == ["0000000001", "0000000002"]


# -- other criteria -----------------------------------------------------------------------------

@pytest.mark.parametrize("birthdate, expected", [
    ("1965-04-15", ["0000000001"]),
    ("19650415", ["0000000001"]),
    ("1965", ["0000000001"]),
    ("1965-04", ["0000000001"]),
    ("1965-05", []),
    (("1960", "1970"), ["0000000001", "0000000009"]),
    ((None, "1950"), ["0000000003"]),
    (("2000-01-01", None), ["0000000005"]),
    ("ge1990", ["0000000004", "0000000005"]),
    ("lt1950", ["0000000003"]),
    ("1955", ["0000000008"]),  # a year-only birth date matches its year
    ("1955-03", []),
    ("1965-04-15T10:00:00+09:00", ["0000000001"]),
    ("ne1965-04-15", sorted(PEOPLE)),  # ne cannot narrow: every patient with a birth date
    ("1999-13", []),  # malformed: nothing, no exception
    ("yesterday", []),
])
def test_birthdate_forms(ro_index: PatientIndex, birthdate, expected):
    assert sorted(ids(ro_index.search(birthdate=birthdate))) == expected


def test_gender_identifier_text_and_combinations(ro_index: PatientIndex):
    assert sorted(ids(ro_index.search(gender="female"))) == ["0000000002", "0000000004", "0000000009"]
    assert ids(ro_index.search(gender="other")) == ["0000000005"]
    assert ids(ro_index.search(gender="nonsense")) == []
    system = patient_identifier_system(FAC)
    assert ids(ro_index.search(identifier="0000000003")) == ["0000000003"]
    assert ids(ro_index.search(identifier=f"{system}|0000000003")) == ["0000000003"]
    assert ids(ro_index.search(identifier="|0000000003")) == ["0000000003"]
    assert ids(ro_index.search(identifier="http://example.org/other|0000000003")) == []
    assert ids(ro_index.search(identifier="000000000")) == []  # exact, not prefix
    assert sorted(ids(ro_index.search(text="ヤマ"))) == ["0000000001", "0000000004"]
    assert ids(ro_index.search(kana="ヤマ", gender="female")) == ["0000000004"]
    assert ids(ro_index.search(kana="ヤマ", birthdate="1965")) == ["0000000001"]
    assert ids(ro_index.search(kana="   ")) == ids(ro_index.search()) != []  # blank = no criterion
    assert ids(ro_index.search(kana="・")) == []


def test_sorted_by_kana_and_limited(ro_index: PatientIndex):
    everyone = ro_index.search()
    assert len(everyone) == 9
    kana = [h.kana for h in everyone if h.kana]
    assert kana == sorted(kana)
    assert ids(everyone[-2:]) == ["0000000006", "0000000007"]  # nameless last, by id
    assert ids(ro_index.search(limit=3)) == ids(everyone[:3])
    assert ro_index.search(limit=0) == []


# -- refresh ------------------------------------------------------------------------------------

def test_refresh_picks_up_added_changed_removed(index: PatientIndex, tree: Path):
    assert index.refresh().changed == 0
    write_adt00(tree, "0000000010", ("小林", "次郎", "コバヤシ", "ジロウ", "19990909", "M"))
    write_adt00(tree, "0000000002", ("佐藤", "花江", "サトウ", "ハナエ", "19800101", "F"),
                ts="20240202090000000")
    shutil.rmtree(pdir(tree, "0000000005"))
    add_visit(tree, "0000000003", "20250505")
    stats = index.refresh()
    assert (stats.changed, stats.removed, stats.patients) == (3, 1, 9)
    assert ids(index.search(kana="コバヤシ")) == ["0000000010"]
    assert ids(index.search(kana="ハナコ")) == []
    assert ids(index.search(kana="ハナエ")) == ["0000000002"]
    assert index.get("0000000005") is None and index.search(gender="other") == []
    assert index.get("0000000003").last_care_date == "2025-05-05"
    age_tree(tree)
    assert index.refresh().changed == 3  # the three were stored as racy: read once more
    assert index.refresh().changed == 0


def test_racy_mtimes_are_reread(index: PatientIndex, tree: Path):
    """A change within the same mtime tick as the previous scan is not lost."""
    d = pdir(tree, "0000000001") / "-" / "ADT-00"
    write_adt00(tree, "0000000001", PEOPLE["0000000001"][:3] + ("ジロウ", "19650415", "M"),
                ts="20240101000000000")
    index.refresh()
    stamp = os.stat(d).st_mtime_ns
    write_adt00(tree, "0000000001", PEOPLE["0000000001"][:3] + ("サブロウ", "19650415", "M"),
                ts="20240102000000000")
    os.utime(d, ns=(stamp, stamp))  # same mtime as at the previous scan
    index.refresh()
    assert index.get("0000000001").kana == "ヤマダ サブロウ"


def test_no_duplicate_hits_after_many_commits_and_merges(index: PatientIndex, tree: Path,
                                                         tmp_path: Path):
    """Whoosh-Reloaded's Searcher.refresh() returns duplicates after a merge; the index reopens
    searchers instead.  A second PatientIndex plays a long-lived reader in another worker."""
    reader = PatientIndex(tmp_path / "data", FAC, [tree])
    assert reader.count() == 9
    expected = 9
    for i in range(14):  # enough small commits for MERGE_SMALL to merge segments
        pid = f"00000001{i:02d}"
        write_adt00(tree, pid, ("森", f"{i}号", "モリ", f"ゴウ{i}", "19900101", "M"))
        write_adt00(tree, "0000000001", ("山田", "太郎", "ヤマダ", "タロウ", "19650415", "M"),
                    ts=f"202402{i + 1:02d}090000000")
        expected += 1
        index.refresh()
        for ix in (index, reader):
            hits = ids(ix.search(limit=1000))
            assert len(hits) == len(set(hits)) == expected == ix.count()
            assert ids(ix.search(kana="ヤマダ")) == ["0000000001"]
    assert len(index._searcher().reader().leaf_readers()) < 8  # segments were merged
    reader.close()


def test_rebuild_keeps_readers_working(index: PatientIndex, tree: Path):
    before = ids(index.search())
    assert index.build().full
    assert ids(index.search()) == before
    assert index.count() == 9


def test_concurrent_search_during_refresh(index: PatientIndex, tree: Path):
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        n = 0
        while not stop.is_set() or n < 5:
            try:
                hits = ids(index.search(kana="ヤマダ"))
                if hits != ["0000000001"]:
                    errors.append(f"got {hits}")
                everyone = ids(index.search(limit=1000))
                if len(everyone) != len(set(everyone)):
                    errors.append("duplicates")
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
            n += 1

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(6):
        write_adt00(tree, f"00000002{i:02d}", ("森", "一", "モリ", "ハジメ", "19900101", "M"))
        index.refresh()
    index.build()
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []
    assert index.count() == 15


def test_one_writer_at_a_time(index: PatientIndex, tmp_path: Path):
    other = WriterLock(tmp_path / "data" / "index" / FAC / "writer.lock")
    assert other.acquire(wait=False)
    try:
        assert "another process" in index.try_refresh().skipped
    finally:
        other.release()
    assert not index.try_refresh().skipped


def test_background_refresh(index: PatientIndex, tree: Path):
    index.start_background_refresh(interval=0.1)
    try:
        write_adt00(tree, "0000000011", ("森", "花", "モリ", "ハナ", "20000101", "F"))
        deadline = time.time() + 20
        # A refresh may catch the folder before the file is written; the racy-mtime rule
        # re-reads it on the next round.
        while getattr(index.get("0000000011"), "kana", "") != "モリ ハナ" \
                and time.time() < deadline:
            time.sleep(0.05)
        assert index.get("0000000011").kana == "モリ ハナ"
    finally:
        index.stop_background_refresh()


def test_mirror_is_indexed_when_the_primary_is_down(tree: Path, tmp_path: Path):
    ix = PatientIndex(tmp_path / "d2", FAC, [tmp_path / "missing", tree])
    stats = ix.build()
    assert stats.root == str(tree) and stats.patients == 9


def test_unreachable_storage_never_empties_the_index(index: PatientIndex, tree: Path, tmp_path: Path):
    gone = tmp_path / "moved"
    tree.rename(gone)
    try:
        stats = PatientIndex(tmp_path / "data", FAC, [tree]).refresh()
        assert stats.skipped.startswith("storage unreadable")
        assert index.count() == 9
    finally:
        gone.rename(tree)


def test_deleted_patient_message(tree: Path, tmp_path: Path):
    write_adt00(tree, "0000000003", PEOPLE["0000000003"], ts="20240101000000000", event="A23")
    ix = PatientIndex(tmp_path / "d3", FAC, [tree])
    ix.build()
    s = ix.get("0000000003")
    assert "ADT^A23" in s.problem and s.kana == "スズキ イチロウ"
    ix.close()


# -- CLI ----------------------------------------------------------------------------------------

def test_cli_builds_and_refreshes(tree: Path, tmp_path: Path, capsys):
    args = ["index", "--storage", str(tree), "--facility", FAC, "--data-dir", str(tmp_path / "cli")]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "9 patients indexed, 9 changed" in out
    assert cli_main(args) == 0
    assert "9 patients indexed, 0 changed" in capsys.readouterr().out
    assert cli_main(args + ["--rebuild"]) == 0
    assert "rebuilt" in capsys.readouterr().out
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'data_dir = "cli"\n[[facility]]\ncode = "{FAC}"\nstorage = ["{tree}"]\n')
    assert cli_main(["index", "--config", str(cfg)]) == 0
    assert "0 changed" in capsys.readouterr().out
    assert cli_main(["index"]) == 2
    assert cli_main(["index", "--config", str(cfg), "--facility", "999"]) == 2


def test_cli_writer_process_while_this_process_reads(index: PatientIndex, tree: Path, tmp_path: Path):
    """A real second process writes (as `fhir-gateway index` beside a running server)."""
    for i in range(3):
        write_adt00(tree, f"00000003{i:02d}", ("森", "三", "モリ", "サン", "19900101", "M"))
    proc = subprocess.Popen([sys.executable, "-m", "fhir_gateway", "index", "--storage", str(tree),
                             "--facility", FAC, "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, text=True)
    while proc.poll() is None:
        hits = ids(index.search(limit=1000))
        assert len(hits) == len(set(hits)) and "0000000001" in hits
    assert proc.returncode == 0, proc.stdout.read()
    assert index.count() == 12 and len(index.search(kana="モリサン")) == 3


# -- real data ----------------------------------------------------------------------------------

def test_synthetic_hospital(tmp_path: Path):
    from fhir_gateway.synth import Options, generate
    from fhir_gateway.synth.patients import make_patient  # noqa: F401

    out = tmp_path / "synth"
    generate(Options(out=out, patients=6, years=1, workers=1, progress=False))
    ix = PatientIndex(tmp_path / "d", "1310000017", [out])
    assert ix.build().patients == 6
    for s in ix.search():
        assert s.name and s.kana and s.birthdate and s.gender in ("male", "female")
        assert s.last_care_date and not s.problem
        assert s.patient_id in ids(ix.search(kana=s.kana.split()[0], birthdate=s.birthdate))
    ix.close()


def test_public_samples(tmp_path: Path):
    root = SAMPLES / "nhoHQ__SSMIX2DataTestingTool" / "sampleData"
    if not root.is_dir():
        pytest.skip(f"public samples not found at {root}")
    ix = PatientIndex(tmp_path / "d", FAC, [root])
    ix.build()
    hit = ix.search(kana="かんじゃ たろう")
    assert "9999013" in ids(hit)
    s = ix.get("9999013")
    assert s.name == "患者 太郎" and s.birthdate == "1948-04-05" and s.gender == "male"
    ix.close()


def test_short_id_and_misplaced_folders(tmp_path: Path):
    root = tmp_path / "ss"
    person = ("森", "短", "モリ", "ミジカ", "19900101", "M")
    d = root / "123" / "123" / "-" / "ADT-00"  # ids of 3 characters may sit directly below level 1
    d.mkdir(parents=True)
    name = FileName("123", "-", "ADT-00", "999999999999999", "20230101090000000", "-", "1")
    (d / name.name).write_bytes(encode_iso2022jp(adt00_text("123", person, name.timestamp)))
    wrong = root / "999" / "999" / "0000000077" / "-" / "ADT-00"
    wrong.mkdir(parents=True)
    name = FileName("0000000077", "-", "ADT-00", "999999999999999", "20230101090000000", "-", "1")
    (wrong / name.name).write_bytes(encode_iso2022jp(adt00_text("0000000077", person, name.timestamp)))
    ix = PatientIndex(tmp_path / "d", FAC, [root])
    ix.build()
    assert ix.get("123").kana == "モリ ミジカ"
    assert "not where the id 0000000077 belongs" in ix.get("0000000077").problem
    ix.close()


@pytest.mark.parametrize("criteria", [
    {"birthdate": ("1990",)}, {"birthdate": ("x", None)}, {"birthdate": "2020-02-30"},
    {"identifier": "|"}, {"identifier": ","}, {"gender": ","}, {"name": ",,"},
    {"kana": "\x00"}, {"text": " "}, {"birthdate": "sa2030", "kana": "ヤマダ"},
])
def test_odd_criteria_never_raise(ro_index: PatientIndex, criteria):
    assert isinstance(ro_index.search(**criteria), list)


def test_an_index_of_another_schema_is_not_read_and_refresh_rebuilds_it(tree: Path,
                                                                       tmp_path: Path):
    """An index written by an older version lacks terms and columns the searches rely on (the
    exact Patient pages, the sort column): it is not read (callers walk) until a refresh,
    which rebuilds it."""
    from whoosh import fields, index as windex
    ix = PatientIndex(tmp_path / "data", FAC, [tree])
    ix.build()
    assert ix.ready() and ix.count() > 0
    ix.close()
    old = fields.Schema(pid=fields.KEYWORD(unique=True, scorable=True))
    w = windex.create_in(str(ix.whoosh_dir), old).writer()
    w.add_document(pid="0000000001")
    w.commit()
    again = PatientIndex(tmp_path / "data", FAC, [tree])
    try:
        assert not again.ready()
        stats = again.refresh()
        assert stats.full and again.ready() and again.count() == ix.count()
    finally:
        again.close()


def test_the_searcher_does_not_map_the_segment(ro_index: PatientIndex):
    """Whoosh maps a compound segment and copies every part it opens into the process (a
    ``BytesIO`` over the mapping: ~70 MB per worker at 20,000 patients); the index is read
    through the file instead — no segment file is mapped after searches, stubs and pages."""
    from conformance import registry
    assert isinstance(ro_index.search(kana="ヤ"), list)
    crit = registry().parse("Patient", [("gender", "female")]).criteria
    assert ro_index.exact_page(crit, [("birthdate", True)], 0, 5, True) is not None
    assert ro_index.stubs(crit)
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("no /proc")
    seg = str(ro_index.whoosh_dir)
    assert not [line for line in maps.read_text().splitlines() if seg in line]
