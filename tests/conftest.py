"""Shared fixtures: a generated hospital on disk and real ``fhir-gateway serve`` processes.

* ``hospital`` (session): a small SS-MIX2 tree written by :func:`build_hospital` (deterministic,
  hand-written message templates filled per patient, encoded like a real storage), a UKE
  receipts folder, and a TOML config.  Its ``facts`` say what was written, for assertions.
* ``server_factory`` (session): starts ``fhir-gateway serve`` on a free loopback port and waits
  for ``/fhir/{facility}/metadata``; every server is stopped at the end of the session.
* ``server`` (session): the default server over ``hospital`` with auth on, and ``token``.
* ``make_token(data_dir, facility)``: a bearer token through the real CLI.
* ``synth_hospital`` / ``synth_server`` / ``synth_api`` (session): ``fhir-gateway synth`` output
  (12 patients x 3 years, seed 11: every mapped data type incl. OMG, OMD, OMP-11/12, extended
  storage and receipts; ~2 s) served by a second server, for search semantics on generator data.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FACILITY = "1312345678"
SAMPLES = ROOT.parent / "shared" / "samples"

MSH = ("MSH|^~\\&|HIS|SEND|GW|RCV|{ts}||{mtype}|{ctl}|P|2.5||||||~ISO IR87||ISO 2022-1994|"
       "SS-MIX2_1.20^SS-MIX2^1.2.392.200250.2.1.100.1.2.120^ISO")

# (kanji family, given, kana family, given, birth date, sex)
PEOPLE = [
    ("山田", "太郎", "ヤマダ", "タロウ", "19650415", "M"),
    ("佐藤", "花子", "サトウ", "ハナコ", "19800101", "F"),
    ("鈴木", "一郎", "スズキ", "イチロウ", "19480405", "M"),
    ("山本", "葉子", "ヤマモト", "ヨウコ", "19921231", "F"),
    ("田中", "優", "タナカ", "ユウ", "20010704", "O"),
]
LAB_CODES = [("3A010000002327101", "総蛋白", "g/dl"), ("3A015000002327101", "アルブミン", "g/dl"),
             ("3D010000001926101", "血糖", "mg/dl")]
LAB_DATES = ["20230110", "20230515", "20231120"]


@dataclass
class Hospital:
    root: Path  # SS-MIX2 storage root
    receipts: Path
    data_dir: Path
    config: Path
    facility: str = FACILITY
    patients: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)


def _msg(mtype: str, ts: str, body: list[str]) -> str:
    return "\r".join([MSH.format(ts=ts, mtype=mtype, ctl=ts)] + body) + "\r"


def _pid_seg(pid: str, person: tuple) -> str:
    fam, giv, kfam, kgiv, birth, sex = person
    return (f"PID|0001||{pid}^^^^PI||{fam}^{giv}^^^^^L^I~{kfam}^{kgiv}^^^^^L^P||{birth}|{sex}|||"
            "^^^^422-8033^JPN^H^静岡県静岡市登呂１－３－５")


def _write(root: Path, pid: str, date: str, dtype: str, order: str, ts: str, flag: str,
           text: str | None = None, raw: bytes | None = None, dept: str = "01") -> str:
    from storage.encoding import encode_iso2022jp
    from storage.layout import Storage
    from storage.names import FileName
    name = FileName(pid, date, dtype, order, ts, dept if date != "-" else "-", flag)
    d = root.joinpath(*Storage.candidate_dirs(pid)[0], date, dtype)
    d.mkdir(parents=True, exist_ok=True)
    (d / name.name).write_bytes(raw if raw is not None else encode_iso2022jp(text or "") + b"\x1c")
    return name.name


def build_hospital(base: Path, n_patients: int = 5) -> Hospital:
    """Write the test hospital below ``base`` (deterministic; no randomness)."""
    root = base / "ssmix2"
    h = Hospital(root, base / "receipts", base / "data", base / "gateway.toml")
    nopat = "999999999999999"
    for i in range(n_patients):
        person = PEOPLE[i % len(PEOPLE)]
        pid = f"{i + 100:010d}"
        h.patients.append(pid)
        pidseg = _pid_seg(pid, person)
        _write(root, pid, "-", "ADT-00", nopat, "20220101090000000", "1", _msg(
            "ADT^A08^ADT_A01", "20220101090000",
            ["EVN||20220101090000", pidseg, "PV1|0001|O",
             f"OBX|1|NM|9N001000000000001^身長^JC10||{160 + i}.5|cm^cm^ISO+|||||F",
             f"OBX|2|NM|9N006000000000001^体重^JC10||{50 + i}.0|kg^kg^ISO+|||||F"]))
        _write(root, pid, "-", "PPR-01", nopat, "20220201100000000", "1", _msg(
            "PPR^ZD1^PPR_ZD1", "20220201100000",
            [pidseg,
             f"PRB|AD|20220201|20054174^胃炎^MDCDX2|{i + 1:015d}|||2022020{1 + i % 8}||"
             f"|K297^^I10^O^外来時^JHSD0004|||||||2022011{i % 9}|胃炎",
             "ZPR||20054174^胃炎^MDCDX2|||TSQF^胃炎^MDCDX2",
             f"ORC|NW|{i + 1:015d}||||||||||110^医師^一郎^^^^^^^L^^^^^I|||||01^内科^99XY1"]))
        for j, day in enumerate(LAB_DATES):
            order = f"{(i + 1) * 1000 + j:015d}"
            obx = []
            for k, (code, text, unit) in enumerate(LAB_CODES):
                value = f"{5 + i + j + k}.{k}"
                obx.append(f"OBX|{k + 1}|NM|{code}^{text}^JC10||{value}|{unit}^{unit}^99XYZ|"
                           f"1.0-9.0||||F|||{day}0900")
            _write(root, pid, day, "OML-11", order, f"{day}120000000", "1", _msg(
                "OUL^R22^OUL_R22", f"{day}120000",
                [pidseg, "PV1|0001|O|01^^^^^C",
                 f"SPM|1|{order}||023^血清^JC10|||||||||||||{day}0900",
                 f"OBR|1|{order}|{order}|E001^血液学的検査^99O03|||{day}|{day}||||||||"
                 f"607^医師一郎^^^^^^^^L^^^^^I||||||{day}1200",
                 f"ORC|SC|{order}|{order}||CM||||{day}1200|||607^医師一郎^^^^^^^^L^^^^^I|"
                 "01^^^^^C||||01^内科^99XY1||||登呂病院||||||||O^外来患者オーダ^HL70482"]
                + obx))
        for j, day in enumerate(("20230110", "20230601")):
            order = f"{(i + 1) * 2000 + j:015d}"
            drug = ("108665201^ダーゼン錠（５mg)^HOT9", "110626901^パンスポリンＴ錠（１００mg)^HOT9")[j]
            _write(root, pid, day, "OMP-01", order, f"{day}103000000", "1", _msg(
                "RDE^O11^RDE_O11", f"{day}103000",
                [pidseg, "PV1|0001|O|01^^^^^C||||110^医師^一郎^^^^^^^L^^^^^I|||01",
                 f"ORC|NW|{order}||1|||||{day}103000|058^入力者^花子^^^^^^^L^^^^^I||"
                 "110^医師^一郎^^^^^^^L^^^^^I|10^^^^^C||||01^内科^99XY1|||||||||||||"
                 "O^外来患者オーダ^HL70482",
                 f"RXE||{drug}|1||TAB^錠^MR9P|||||15|TAB^錠^MR9P||||||||3^TAB&錠&MR9P||"
                 "OHP^外来処方^MR9P~OHI^院内処方^MR9P",
                 f"TQ1|1||1013044400000000&内服・経口・１日３回朝昼夕食後&JAMISDP01|||5^d|{day}00",
                 "RXR|PO^口^HL70162"]))
        _write(root, pid, "20230110", "ADT-12", nopat, "20230110083000000", "1", _msg(
            "ADT^A04^ADT_A01", "20230110083000",
            ["EVN||20230110083000", pidseg,
             "PV1|0001|O|01^^^^^C||||110^医師^一郎^^^^^^^L^^^^^I|||01" + "|" * 34 + "202301100830"]))
    first = h.patients[0]
    _write(root, first, "-", "ADT-61", nopat, "20220301100000000", "1", _msg(
        "ADT^A60^ADT_A60", "20220301100000",
        ["EVN||20220301100000", _pid_seg(first, PEOPLE[0]),
         "IAM|1|FA^食物アレルギー^HL70127|5A1002411023006^ソバ^JC10|MO^中等度^HL70128|湿疹|"
         "A^追加^HL70323|||||199601||20220301",
         "IAM|2|DA^薬剤アレルギー^HL70127|106824501^アリナミン^HOT9|MI^軽度^HL70128|発疹|"
         "A^追加^HL70323|||||20070710||20220301"]))
    # a record with two versions: the preliminary result (flag 2) and the final one (flag 1)
    order = f"{9000:015d}"
    for ts, flag, value in (("20230201120000000", "2", "3.1"), ("20230202120000000", "1", "3.3")):
        _write(root, first, "20230201", "OML-11", order, ts, flag, _msg(
            "OUL^R22^OUL_R22", ts[:14],
            [_pid_seg(first, PEOPLE[0]), "PV1|0001|O|01^^^^^C",
             f"SPM|1|{order}||023^血清^JC10|||||||||||||202302010900",
             f"OBR|1|{order}|{order}|E001^血液学的検査^99O03|||20230201|20230201",
             f"ORC|SC|{order}|{order}||CM||||202302011200",
             f"OBX|1|NM|3A016000002327102^A/G比^JC10||{value}||1.2-2.0||||F|||202302010900"]))
    # a deleted record: only a flag-0 file
    deleted = f"{9100:015d}"
    _write(root, first, "20230301", "OMP-01", deleted, "20230301100000000", "0", _msg(
        "RDE^O11^RDE_O11", "20230301100000",
        [_pid_seg(first, PEOPLE[0]),
         f"ORC|CA|{deleted}||1|||||20230301100000",
         "RXE||108665201^ダーゼン錠（５mg)^HOT9|1||TAB^錠^MR9P|||||15|TAB^錠^MR9P",
         "TQ1|1||1013044400000000&内服・経口・１日３回朝昼夕食後&JAMISDP01|||5^d|2023030100",
         "RXR|PO^口^HL70162"]))
    # a broken file (binary garbage) among the lab results of the first patient
    broken = _write(root, first, "20230515", "OML-11", f"{9200:015d}", "20230515130000000", "1",
                    raw=b"MSH|^~\\&|\x00\x01\x02garbage")
    _write_receipts(h.receipts, first)
    h.facts = {"first": first, "versioned_order": order, "deleted_order": deleted,
               "broken_file": broken, "labs_per_patient": len(LAB_DATES) * len(LAB_CODES)}
    h.data_dir.mkdir(parents=True, exist_ok=True)
    h.config.write_text(
        f'data_dir = "{h.data_dir}"\n\n[[facility]]\ncode = "{FACILITY}"\nname = "テスト病院"\n'
        f'storage = ["{root}"]\nreceipts = ["{h.receipts}"]\n', encoding="utf-8")
    return h


def _write_receipts(folder: Path, pid: str) -> None:
    """One 医科 UKE file: a receipt for ``pid`` (カルテ番号) and one for an unmatched person."""
    try:
        from fhir_gateway.synth.uke import build_record, encode_uke
    except ImportError:
        return
    karte = str(int(pid))  # leading zeros dropped: the matching rule pads back to 10 digits
    recs = [
        build_record("IR", {"payer": "2", "prefecture": "13", "tensuhyo": "1",
                            "facility_code": "2345678", "facility_name": "テスト病院",
                            "claim_month": "202303", "volume": "00", "phone": "03-0000-0000"}),
        build_record("RE", {"receipt_no": "1", "receipt_type": "1112", "service_month": "202303",
                            "name": "山田　太郎", "sex": "1", "birth_date": "19650415",
                            "benefit_ratio": "70", "karte_no": karte, "kana": "ヤマダ　タロウ"}),
        build_record("HO", {"insurer_no": "  133066", "symbol": "１２３", "number": "４５",
                            "days": "1", "points": "282"}),
        build_record("SI", {"category": "11", "burden": "1", "code": "111000110",
                            "points": "282", "count": "1", "day09": "1"}),
        build_record("RE", {"receipt_no": "2", "receipt_type": "1111", "service_month": "202303",
                            "name": "佐藤花子", "sex": "2", "birth_date": "19500101"}),
        build_record("KO", {"payer_no": "12131017", "recipient_no": "0000000", "points": "35"}),
        build_record("SI", {"category": "90", "burden": "1", "code": "190000000",
                            "points": "35", "count": "1", "day03": "1"}),
        build_record("GO", {"total_receipts": "2", "total_points": "317", "volume": "99"}),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "RECEIPTC.UKE").write_bytes(encode_uke(recs))


@pytest.fixture(scope="session")
def hospital(tmp_path_factory) -> Hospital:
    return build_hospital(tmp_path_factory.mktemp("hospital"))


SYNTH = {"patients": 12, "years": 3, "seed": 11}


def build_synth_hospital(base: Path, patients: int = SYNTH["patients"], years: int = SYNTH["years"],
                         seed: int = SYNTH["seed"]) -> Hospital:
    """Run ``fhir-gateway synth`` into ``base`` and write a config serving all three sources."""
    h = Hospital(base / "ssmix2", base / "receipts", base / "data", base / "gateway.toml")
    extended = base / "extended"
    subprocess.run([str(BIN / "fhir-gateway"), "synth", "--out", str(h.root), "--patients",
                    str(patients), "--seed", str(seed), "--years", str(years), "--facility",
                    FACILITY, "--receipts-out", str(h.receipts), "--extended-out", str(extended),
                    "--no-progress", "--workers", "2"], check=True, capture_output=True)
    from storage.layout import Storage
    h.patients = sorted(Storage(h.root).patient_ids())
    h.facts = {"extended": extended}
    h.data_dir.mkdir(parents=True, exist_ok=True)
    h.config.write_text(
        f'data_dir = "{h.data_dir}"\n\n[[facility]]\ncode = "{FACILITY}"\nname = "合成病院"\n'
        f'storage = ["{h.root}"]\nextended = ["{extended}"]\nreceipts = ["{h.receipts}"]\n',
        encoding="utf-8")
    cohort = base / "cohort.txt"  # a Group (bulk-export cohort) of the first three patients
    cohort.write_text("\n".join(h.patients[:3]) + "\n")
    subprocess.run([str(BIN / "fhir-gateway"), "group", "create", "--data-dir", str(h.data_dir),
                    "--facility", FACILITY, "--name", "cohort", "--patients", str(cohort)],
                   check=True, capture_output=True)
    return h


@pytest.fixture(scope="session")
def synth_hospital(tmp_path_factory) -> Hospital:
    return build_synth_hospital(tmp_path_factory.mktemp("synth"))


# -- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_token(data_dir: Path, facility: str = FACILITY, name: str = "tests") -> str:
    out = subprocess.run([str(BIN / "fhir-gateway"), "token", "create", "--data-dir",
                          str(data_dir), "--name", name, "--facility", facility],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    facility: str = FACILITY
    token: str | None = None

    @property
    def base(self) -> str:
        return f"{self.url}/fhir/{self.facility}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def crash(self) -> None:
        """SIGKILL the server and every process below it (workers, a job's mapping processes):
        a crash, with nothing finished on the way out."""
        for p in process_tree(self.proc.pid):  # the parent first: it would restart a worker
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux /proc), parents before their children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        try:
            todo += [int(x) for x in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def start_server(args: list[str], facility: str = FACILITY, token: str | None = None,
                 workers: int = 2, timeout: float = 30.0, env: dict | None = None,
                 preexec_fn=None) -> Server:
    """Run ``fhir-gateway serve ARGS --port <free>`` and wait until /metadata answers."""
    import requests
    port = free_port()
    cmd = [str(BIN / "fhir-gateway"), "serve", *args, "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, preexec_fn=preexec_fn)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()}")
        try:
            if requests.get(f"{url}/fhir/{facility}/metadata", timeout=1).status_code == 200:
                return Server(url, proc, facility, token)
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not come up")


@pytest.fixture(scope="session")
def server_factory():
    servers: list[Server] = []

    def factory(args: list[str], **kw) -> Server:
        s = start_server(args, **kw)
        servers.append(s)
        return s

    yield factory
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def token(hospital) -> str:
    return make_token(hospital.data_dir)


@pytest.fixture(scope="session")
def server(hospital, token, server_factory) -> Server:
    s = server_factory(["--config", str(hospital.config)], token=token)
    return s


@pytest.fixture(scope="session")
def synth_server(synth_hospital, server_factory) -> Server:
    tok = make_token(synth_hospital.data_dir)
    return server_factory(["--config", str(synth_hospital.config)], token=tok)


@pytest.fixture()
def synth_api(synth_server):
    """A requests session pointed at the server over the generator data."""
    import requests
    sess = requests.Session()
    sess.headers.update(synth_server.headers)
    sess.base = synth_server.base  # type: ignore[attr-defined]
    yield sess
    sess.close()


@pytest.fixture()
def api(server):
    """A requests session pointed at the default server, authenticated."""
    import requests
    sess = requests.Session()
    sess.headers.update(server.headers)
    sess.base = server.base  # type: ignore[attr-defined]
    yield sess
    sess.close()


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server (Debian binaries, temp dir, loopback) for the scale-out tests;
    skipped with the reason when it cannot start here (CI installs it: scripts/system-deps.sh)."""
    try:
        from fhir_gateway.scale.pgserver import PgServer, Unavailable
        import psycopg  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"psycopg is not installed ({exc}): pip install -e '.[test]'")
    try:
        server = PgServer()
        server.start()
    except Unavailable as exc:
        pytest.skip(f"PostgreSQL cannot start here: {exc}")
    yield server
    server.stop()


@pytest.fixture()
def pg_dsn(pg_server, request) -> str:
    """A fresh database, upgraded to the current schema, for one test."""
    import re as _re
    from fhir_gateway.scale.migrations import upgrade
    name = "t_" + _re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:40] + f"_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    dsn = pg_server.create_database(name)
    upgrade(dsn)
    return dsn
