"""HL7 v2.5 message builders, one per SS-MIX2 data type.

Field positions follow reference/ssmix2.md §5 (the guideline samples) and appendix A; they are
what the mappers read.  Builders return plain text with CR segment separators; the writer adds
the trailing CR + 0x1C and encodes to ISO-2022-JP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from . import content as C
from .hl7build import cwe, d8, msh, seg, sub, ts
from .patients import Condition, Doctor, Patient, staff_xcn

NO_ORDER = "999999999999999"


@dataclass
class Doc:
    """One standardized-storage file before naming: the writer turns it into a FileName."""

    dtype: str
    date: str  # YYYYMMDD or "-"
    order_no: str
    dept: str  # "-" when none
    when: datetime  # 発生日時
    text: str
    flag: str = "1"


class Builder:
    """Message builders bound to one facility and patient."""

    def __init__(self, facility: str, patient: Patient) -> None:
        self.facility = facility
        self.p = patient
        self._control = 0
        self.visit = ""  # PV1-19 visit number of the encounter being written ("" = none)
        self._pid_cache: dict[bool, str] = {}

    # -- common segments ---------------------------------------------------------------------
    def header(self, at: datetime, msg_type: str) -> str:
        self._control += 1
        control = f"{ts(at)}{self.p.index % 1000:03d}{self._control % 1000:03d}"
        return msh(self.facility, ts(at) + f".{at.microsecond // 1000:03d}", msg_type, control)

    def pid(self, full: bool = False, updated: datetime | None = None) -> str:
        p = self.p
        key = full and updated is None
        if key in self._pid_cache:
            return self._pid_cache[key]
        f = {
            1: "0001",
            3: f"{p.pid}^^^^PI",
            5: f"{p.family}^{p.given}^^^^^L^I~{p.kana_family}^{p.kana_given}^^^^^L^P",
            7: d8(p.birth),
            8: p.sex,
            11: f"^^^^{p.postal}^JPN^H^{p.address}",
        }
        if full:
            f[13] = f"^PRN^PH^^^^^^^^^{p.phone}"
            if p.relation[0] == "SEL" and p.age(date(2026, 1, 1)) < 70:
                f[14] = f"^WPN^PH^^^^^^^^^{p.work_phone}"
            if updated is not None:
                f[33] = ts(updated)
        text = seg("PID", f)
        if updated is None:
            self._pid_cache[key] = text
        return text

    def pv1_out(self, dept: str, doctor: Doctor | None, at: datetime | None = None) -> str:
        f = {1: "0001", 2: "O", 3: f"{dept}^^^^^C", 10: dept, 19: self.visit}
        if doctor:
            f[7] = doctor.xcn
        if at is not None:
            f[44] = ts(at, 12)
        return seg("PV1", f)

    def pv1_in(self, loc: str, dept: str, doctor: Doctor, admitted: datetime | None = None,
               discharged: datetime | None = None, prior: str = "", disposition: str = "") -> str:
        f = {1: "0001", 2: "I", 3: loc, 6: prior, 7: doctor.xcn, 10: dept, 17: doctor.xcn,
             19: self.visit, 36: disposition}
        if admitted is not None:
            f[44] = ts(admitted, 12)
        if discharged is not None:
            f[45] = ts(discharged, 12)
        return seg("PV1", f)

    def orc(self, control: str, order_no: str, at: datetime, doctor: Doctor, dept: str,
            inpatient: bool, group: str = "", location: str = "", filler: str = "",
            status: str = "") -> str:
        return seg("ORC", {
            1: control, 2: order_no, 3: filler, 4: group, 5: status, 9: ts(at),
            10: staff_xcn(C.CLERKS[0]), 12: doctor.xcn,
            13: location or f"{dept}^^^^^C",
            17: cwe(dept, C.DEPARTMENTS[dept], "HL70069"),
            21: C.HOSPITAL_NAME, 22: f"^^^^{C.HOSPITAL_POSTAL}^JPN^^{C.HOSPITAL_ADDRESS}",
            23: f"^^^^^^^^^^^{C.HOSPITAL_PHONE}",
            29: "I^入院患者オーダ^HL70482" if inpatient else "O^外来患者オーダ^HL70482",
        })

    def _msg(self, at: datetime, msg_type: str, *segments: str) -> str:
        return "\r".join((self.header(at, msg_type),) + segments)

    # -- ADT-00 患者基本情報 -------------------------------------------------------------------
    def adt00(self, at: datetime, weight: float, dept: str) -> str:
        p = self.p
        kin = p.kin
        segs = [
            seg("EVN", {2: ts(at, 12), 7: "SEND001"}),
            self.pid(full=True, updated=at),
            seg("NK1", {1: "1", 2: f"{kin[0]}^{kin[1]}^^^^^L^I~{kin[2]}^{kin[3]}^^^^^L^P",
                        3: cwe(kin[4], kin[5], "HL70063"),
                        4: f"^^^^{p.postal}^JPN^H^{p.address}", 5: f"^PRN^PH^^^^^^^^^{p.phone}"}),
            seg("PV1", {1: "0001", 2: "O", 3: f"{dept}^^^^^C"}),
            seg("OBX", {1: "1", 2: "NM", 3: "9N001000000000001^身長^JC10", 5: f"{p.height:.1f}",
                        6: "cm^cm^ISO+", 11: "F"}),
            seg("OBX", {1: "2", 2: "NM", 3: "9N006000000000001^体重^JC10", 5: f"{weight:.1f}",
                        6: "kg^kg^ISO+", 11: "F"}),
            seg("OBX", {1: "3", 2: "CWE", 3: "5H010000001999911^血液型-ABO式^JC10",
                        5: f"{p.abo}^{p.abo}^JSHR002", 11: "F"}),
            seg("OBX", {1: "4", 2: "CWE", 3: "5H020000001999911^血液型-Rh式^JC10",
                        5: f"{p.rh}^Rh{p.rh}^JSHR002", 11: "F"}),
        ]
        for i, a in enumerate(p.allergies, 1):
            segs.append(seg("AL1", {1: str(i), 2: cwe(a[0], a[1], "HL70127"), 3: cwe(a[2], a[3], a[4])}))
        ins = p.insurance_on(at.date())
        segs.append(seg("IN1", {
            1: "1", 2: cwe(ins.kind, ins.kind_name, "JHSD0001"), 3: ins.insurer, 4: ins.insurer_name,
            10: p.ins_symbol.translate(C.FULLWIDTH_DIGITS), 11: p.ins_number.translate(C.FULLWIDTH_DIGITS),
            12: d8(date(at.year if at.month >= 4 else at.year - 1, 4, 1)),  # 資格取得: fiscal year start
            17: cwe(*p.relation, "HL70063"),
        }))
        return self._msg(at, "ADT^A08^ADT_A01", *segs)

    # -- ADT-61 アレルギー -----------------------------------------------------------------------
    def adt61(self, at: datetime, action: str = "A") -> str:
        segs = [seg("EVN", {2: ts(at)}), self.pid()]
        actions = {"A": "追加", "U": "更新", "D": "削除"}
        for i, a in enumerate(self.p.allergies, 1):
            sev = C.SEVERITY[(i + self.p.index) % 3]
            segs.append(seg("IAM", {
                1: str(i), 2: cwe(a[0], a[1], "HL70127"), 3: cwe(a[2], a[3], a[4]),
                4: cwe(sev[0], sev[1], "HL70128"), 5: a[5], 6: cwe(action, actions[action], "HL70323"),
                7: f"{self.p.pid}-AL{i}", 11: f"{self.p.birth.year + 5 + i * 7}",
                13: ts(at),
            }))
        return self._msg(at, "ADT^A60^ADT_A60", *segs)

    # -- PPR-01 病名 (one file with every diagnosis) ----------------------------------------------
    def ppr01(self, at: datetime, conditions: list[Condition]) -> str:
        segs = [self.pid()]
        for c in conditions:
            d = c.disease
            setting = {"O": "外来時", "H": "入院時"}[c.setting]
            prb = {
                1: "AD" if c.recorded == at.date() else "UP", 2: ts(at),
                3: cwe(d.medis, d.name, "MDCDX2"), 4: c.instance, 7: d8(c.recorded),
                10: f"{d.icd10}^^I10^{c.setting}^{setting}^JHSD0004", 16: d8(c.onset),
                18: "1^主診断^JHSD0007" if c.main else "2^副診断^JHSD0007",
            }
            if c.suspected:
                prb[13] = "1^疑いあり^JHSD0005"
            if c.end is not None and c.end <= at.date():
                prb[9] = d8(c.end)
                prb[14] = {"F": "F^治癒^HL70241", "P": "P^軽快^HL70241", "D": "D^死亡^HL70241",
                           "S": "U^中止^HL70241"}[c.outcome or "F"]
                prb[15] = d8(c.end)
            segs.append(seg("PRB", prb))
            zpr = {2: cwe(d.medis, d.name, "MDCDX2"), 5: cwe(d.exchange, d.name, "MDCDX2")}
            if c.suspected:
                zpr[3] = cwe(C.MODIFIER_SUSPECTED[0], "の疑い", "MDCDX2")
                zpr[6] = cwe(C.MODIFIER_SUSPECTED[0], "の疑い", "MDCDX2")
            segs.append(seg("ZPR", zpr))
            doc = c.doctor
            if doc is not None:
                segs.append(seg("ORC", {1: "NW", 2: c.instance, 12: doc.xcn,
                                        17: cwe(doc.dept, C.DEPARTMENTS[doc.dept], "HL70069"),
                                        29: "I^入院患者オーダ^HL70482" if c.setting == "H"
                                        else "O^外来患者オーダ^HL70482"}))
        return self._msg(at, "PPR^ZD1^PPR_ZD1", *segs)

    # -- encounters --------------------------------------------------------------------------
    def adt12(self, at: datetime, dept: str, doctor: Doctor) -> str:
        return self._msg(at, "ADT^A04^ADT_A01", seg("EVN", {2: ts(at, 12), 6: ts(at, 12)}),
                         self.pid(), self.pv1_out(dept, doctor, at))

    def adt21(self, at: datetime, planned: datetime, dept: str, doctor: Doctor, loc: str,
              cancel: bool = False) -> str:
        event = "ADT^A27^ADT_A21" if cancel else "ADT^A14^ADT_A05"
        return self._msg(at, event, seg("EVN", {2: ts(at, 12)}), self.pid(),
                         seg("PV1", {19: self.visit, 1: "0001", 2: "I", 3: loc, 7: doctor.xcn, 10: dept}),
                         seg("PV2", {8: ts(planned, 12)}))

    def adt22(self, at: datetime, admitted: datetime, dept: str, doctor: Doctor, loc: str,
              cancel: bool = False) -> str:
        event = "ADT^A11^ADT_A09" if cancel else "ADT^A01^ADT_A01"
        return self._msg(at, event, seg("EVN", {2: ts(at, 12), 6: ts(admitted, 12)}), self.pid(),
                         self.pv1_in(loc, dept, doctor, admitted=admitted))

    def adt41(self, at: datetime, planned: datetime, dept: str, doctor: Doctor, loc: str,
              new_loc: str) -> str:
        return self._msg(at, "ADT^A15^ADT_A15", seg("EVN", {2: ts(at, 12)}), self.pid(),
                         self.pv1_in(loc, dept, doctor),
                         seg("PV2", {1: new_loc, 8: ts(planned, 12)}))

    def adt42(self, at: datetime, moved: datetime, dept: str, doctor: Doctor, loc: str,
              prior: str, admitted: datetime) -> str:
        return self._msg(at, "ADT^A02^ADT_A02", seg("EVN", {2: ts(at, 12), 6: ts(moved, 12)}),
                         self.pid(), self.pv1_in(loc, dept, doctor, admitted=admitted, prior=prior))

    def adt51(self, at: datetime, planned: datetime, dept: str, doctor: Doctor, loc: str,
              admitted: datetime) -> str:
        return self._msg(at, "ADT^A16^ADT_A16", seg("EVN", {2: ts(at, 12)}), self.pid(),
                         self.pv1_in(loc, dept, doctor, admitted=admitted),
                         seg("PV2", {9: ts(planned, 12)}))

    def adt52(self, at: datetime, discharged: datetime, dept: str, doctor: Doctor, loc: str,
              admitted: datetime, disposition: str = "01") -> str:
        return self._msg(at, "ADT^A03^ADT_A03", seg("EVN", {2: ts(at, 12), 6: ts(discharged, 12)}),
                         self.pid(), self.pv1_in(loc, dept, doctor, admitted=admitted,
                                                 discharged=discharged, disposition=disposition))

    # -- OMP-01 処方 / OMP-11 処方実施 -----------------------------------------------------------
    def _rxe_drug(self, d: C.Drug, days: int, rx_no: str, inpatient: bool, dose: str) -> str:
        per_day = d.times or 1
        total = float(dose) * per_day * days
        total_s = f"{total:g}"
        unit = cwe(d.unit, d.unit_name, "MR9P")
        # 院内処方: the hospital pharmacy dispenses, so the drugs appear in the hospital's receipts.
        dispense = ("IHP^入院処方^MR9P~IHI^院内処方^MR9P" if inpatient
                    else "OHP^外来処方^MR9P~OHI^院内処方^MR9P")
        kind = {"21": "21^内服^JHSP0003", "22": "22^頓用^JHSP0003", "23": "23^外用^JHSP0003"}
        f = {2: cwe(d.hot9, d.name, "HOT9"), 3: dose, 5: unit, 6: cwe(d.form, d.form_name, "MR9P"),
             7: "01^１回目から服用^JHSP0005", 10: total_s, 11: unit, 15: rx_no,
             21: dispense, 27: kind[d.category], 31: cwe(d.yj, d.name, "YJ")}
        if d.times:
            f[19] = f"{float(dose) * per_day:g}^" + sub(d.unit, d.unit_name, "MR9P")
        return seg("RXE", f)

    @staticmethod
    def _tq1_drug(d: C.Drug, days: int, start: datetime) -> str:
        return seg("TQ1", {1: "1", 3: sub(d.usage, d.usage_text, "JAMISDP01"), 6: f"{days}^d",
                           7: ts(start, 10)})

    @staticmethod
    def _rxr(d: C.Drug) -> str:
        if d.form == "INH":
            return seg("RXR", {1: "IH^吸入^HL70162"})
        if d.form == "PAP":
            return seg("RXR", {1: "TP^局所^HL70162"})
        return seg("RXR", {1: "PO^口^HL70162"})

    def omp01(self, at: datetime, order_no: str, rps: list[list[tuple[C.Drug, str]]], days: int,
              dept: str, doctor: Doctor, inpatient: bool, cancel: bool = False) -> str:
        segs = [self.pid(), self.pv1_out(dept, doctor) if not inpatient else
                seg("PV1", {19: self.visit, 1: "0001", 2: "I", 7: doctor.xcn, 10: dept})]
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        for rp_no, rp in enumerate(rps, 1):
            for d, dose in rp:
                segs.append(self.orc("CA" if cancel else "NW", order_no, at, doctor, dept, inpatient,
                                     group=str(rp_no)))
                segs.append(self._rxe_drug(d, days if d.times else 5, f"{order_no[-8:]}", inpatient,
                                           dose))
                segs.append(self._tq1_drug(d, days if d.times else 5, start))
                segs.append(self._rxr(d))
        return self._msg(at, "RDE^O11^RDE_O11", *segs)

    def omp11(self, at: datetime, order_no: str, drugs: list[tuple[C.Drug, str]], given: datetime,
              dept: str, doctor: Doctor, nurse: tuple[str, str, str], loc: str) -> str:
        segs = [self.pid(), seg("PV1", {19: self.visit, 1: "0001", 2: "I", 3: loc, 7: doctor.xcn, 10: dept})]
        for rp_no, (d, dose) in enumerate(drugs, 1):
            segs.append(self.orc("NW", order_no, at, doctor, dept, True, group=str(rp_no),
                                 location=loc))
            segs.append(self._rxe_drug(d, 1, order_no[-8:], True, dose))
            segs.append(self._tq1_drug(d, 1, given))
            segs.append(self._rxr(d))
            segs.append(seg("RXA", {1: "0", 2: "1", 3: ts(given), 4: ts(given),
                                    5: cwe(d.hot9, d.name, "HOT9"), 6: dose,
                                    7: cwe(d.unit, d.unit_name, "MR9P"), 10: staff_xcn(nurse),
                                    11: loc, 20: "CP", 22: ts(at)}))
            segs.append(self._rxr(d))
        return self._msg(at, "RAS^O17^RAS_O17", *segs)

    # -- OMP-02 注射 / OMP-12 注射実施 -----------------------------------------------------------
    def _inj_rxe(self, kind: tuple[str, str], volume: str, rate: str, inpatient: bool,
                 rx_no: str) -> str:
        f = {2: cwe(kind[0], kind[1], "JHSI0002"), 3: volume, 5: "ML^ミリリットル^MR9P",
             6: "INJ^注射剤^MR9P", 15: rx_no,
             21: "IHP^入院処方^MR9P~FTP^定時処方^JHSI0001" if inpatient else "OHP^外来処方^MR9P",
             27: "02^点滴^JHSI0009" if rate else "01^静注^JHSI0009"}
        if rate:
            f[23] = rate
            f[24] = "ml/hr^ミリリットル／時間^ISO+"
        return seg("RXE", f)

    def omp02(self, at: datetime, order_no: str, doses: list[tuple[datetime, datetime]],
              components: list[tuple[str, C.Injection]], dept: str, doctor: Doctor, loc: str,
              kind: tuple[str, str] = ("00", "一般"), inpatient: bool = True) -> str:
        pv1 = (seg("PV1", {19: self.visit, 1: "0001", 2: "I", 3: loc, 7: doctor.xcn, 10: dept}) if inpatient
               else self.pv1_out(dept, doctor))
        segs = [self.pid(), pv1]
        rate = "" if kind[0] == "06" else "100"
        volume = "0.5" if kind[0] == "06" else "600"
        for n, (start, end) in enumerate(doses, 1):
            segs.append(self.orc("NW", order_no, at, doctor, dept, inpatient,
                                 group=f"{order_no}_01_{n:03d}", location=loc))
            segs.append(self._inj_rxe(kind, volume, rate, inpatient, order_no[-8:]))
            segs.append(seg("TQ1", {1: "1", 7: ts(start, 12), 8: ts(end, 12)}))
            segs.append(seg("RXR", {1: "IV^静脈内^HL70162", 3: "IVP^点滴ポンプ^HL70164"} if rate
                            else {1: "IM^筋肉内^HL70162" if kind[0] == "06" else "IV^静脈内^HL70162"}))
            for role, inj in components:
                segs.append(seg("RXC", {1: role, 2: cwe(inj.hot9, inj.name, "HOT9"), 3: inj.amount,
                                        4: cwe(inj.unit, inj.unit_name, "MR9P")}))
        return self._msg(at, "RDE^O11^RDE_O11", *segs)

    def omp12(self, at: datetime, order_no: str, n: int, start: datetime, end: datetime,
              components: list[tuple[str, C.Injection]], dept: str, doctor: Doctor, loc: str,
              nurse: tuple[str, str, str], kind: tuple[str, str] = ("00", "一般"),
              inpatient: bool = True, lot: str = "", maker: str = "") -> str:
        pv1 = (seg("PV1", {19: self.visit, 1: "0001", 2: "I", 3: loc, 7: doctor.xcn, 10: dept}) if inpatient
               else self.pv1_out(dept, doctor))
        rate = "" if kind[0] == "06" else "100"
        volume = "0.5" if kind[0] == "06" else "600"
        segs = [self.pid(), pv1,
                self.orc("NW", order_no, at, doctor, dept, inpatient, group=f"{order_no}_01_{n:03d}",
                         location=loc),
                self._inj_rxe(kind, volume, rate, inpatient, order_no[-8:]),
                seg("TQ1", {1: "1", 7: ts(start, 12), 8: ts(end, 12)})]
        route = ({1: "IV^静脈内^HL70162", 3: "IVP^点滴ポンプ^HL70164"} if rate
                 else {1: "IM^筋肉内^HL70162" if kind[0] == "06" else "IV^静脈内^HL70162"})
        segs.append(seg("RXR", route))
        for role, inj in components:
            segs.append(seg("RXC", {1: role, 2: cwe(inj.hot9, inj.name, "HOT9"), 3: inj.amount,
                                    4: cwe(inj.unit, inj.unit_name, "MR9P")}))
        for _role, inj in components:
            f = {1: "0", 2: "1", 3: ts(start), 4: ts(end), 5: cwe(inj.hot9, inj.name, "HOT9"),
                 6: inj.amount, 7: cwe(inj.unit, inj.unit_name, "MR9P"), 10: staff_xcn(nurse),
                 11: loc, 20: "CP", 22: ts(at)}
            if rate:
                f[12] = f"{rate}ml/hr"
            if lot:
                f[9] = "^左上腕に実施^99IC2"
                f[15] = lot
                f[17] = maker
            segs.append(seg("RXA", f))
        segs.append(seg("RXR", route))
        return self._msg(at, "RAS^O17^RAS_O17", *segs)

    # -- OML-01 検体検査オーダ / OML-11 検体検査結果 ---------------------------------------------
    def oml01(self, at: datetime, order_no: str, groups: dict[str, list[C.Lab]], dept: str,
              doctor: Doctor, inpatient: bool, collect: datetime, cancel: bool = False) -> str:
        segs = [self.pid(), self.pv1_out(dept, doctor) if not inpatient else
                seg("PV1", {19: self.visit, 1: "0001", 2: "I", 7: doctor.xcn, 10: dept})]
        for n, (material, labs) in enumerate(groups.items(), 1):
            segs.append(seg("SPM", {1: str(n), 4: cwe(material, C.MATERIALS[material], "JC10"),
                                    17: ts(collect, 12)}))
            segs.append(self.orc("CA" if cancel else "NW", order_no, at, doctor, dept, inpatient,
                                 status="" if cancel else ""))
            segs.append(seg("TQ1", {1: "1", 7: ts(collect, 12), 9: "R^ルーチン^HL70485"}))
            group = labs[0].group
            segs.append(seg("OBR", {1: str(n), 2: order_no, 4: cwe(group, C.LAB_GROUPS[group], "99O03"),
                                    16: doctor.xcn}))
            for i, lab in enumerate(labs, 1):
                segs.append(seg("OBX", {1: str(i), 3: f"{lab.jlac10}^{lab.name}^JC10^{lab.local}^{lab.name}^99X03",
                                        11: "O"}))
        return self._msg(at, "OML^O33^OML_O33", *segs)

    def oml11(self, at: datetime, order_no: str, results: dict[str, list[tuple]], dept: str,
              doctor: Doctor, inpatient: bool, collect: datetime, specimen: str) -> str:
        """``results[material]`` = [(kind, code, name, local, value, unit, range, flag, status)]."""
        segs = [self.pid(), self.pv1_out(dept, doctor) if not inpatient else
                seg("PV1", {19: self.visit, 1: "0001", 2: "I", 7: doctor.xcn, 10: dept})]
        for n, (material, rows) in enumerate(results.items(), 1):
            spec_id = f"{specimen}{n}"
            segs.append(seg("SPM", {1: str(n), 2: spec_id, 4: cwe(material, C.MATERIALS[material], "JC10"),
                                    17: ts(collect, 12)}))
            group = rows[0][9]
            segs.append(seg("OBR", {1: str(n), 2: order_no, 3: spec_id,
                                    4: cwe(group, C.LAB_GROUPS[group], "99O03"), 7: ts(collect, 12),
                                    16: doctor.xcn, 22: ts(at)}))
            segs.append(self.orc("SC", order_no, at, doctor, dept, inpatient, filler=spec_id, status="CM"))
            for i, (kind, code, name, local, value, unit, rng, flag, status, _g) in enumerate(rows, 1):
                segs.append(seg("OBX", {
                    1: str(i), 2: kind, 3: f"{code}^{name}^JC10^{local}^{name}^99X03", 5: value,
                    6: f"{unit}^{unit}^ISO+" if unit else "", 7: rng, 8: flag, 11: status,
                    14: ts(collect, 12)}))
        return self._msg(at, "OUL^R22^OUL_R22", *segs)

    # -- OMG-01/02 オーダ, OMG-11/12 実施 -------------------------------------------------------
    def omg_order(self, at: datetime, order_no: str, code: str, name: str, system: str,
                  planned: datetime, purpose: str, dept: str, doctor: Doctor, inpatient: bool) -> str:
        segs = [self.pid(), self.pv1_out(dept, doctor) if not inpatient else
                seg("PV1", {19: self.visit, 1: "0001", 2: "I", 7: doctor.xcn, 10: dept}),
                self.orc("NW", order_no, at, doctor, dept, inpatient),
                seg("TQ1", {1: "1", 7: ts(planned, 12), 9: "R^ルーチン^HL70485"}),
                seg("OBR", {1: "1", 2: order_no, 4: cwe(code, name, system), 16: doctor.xcn,
                            36: ts(planned, 12)}),
                seg("OBX", {1: "1", 2: "ST", 3: "01^依頼目的^99RAD", 5: purpose, 11: "F"})]
        return self._msg(at, "OMG^O19^OMG_O19", *segs)

    def omg_done(self, at: datetime, order_no: str, code: str, name: str, system: str,
                 done: datetime, modality: str, dept: str, doctor: Doctor, inpatient: bool,
                 accession: str, finding: str) -> str:
        uid = f"1.2.392.200036.9116.2.{int(self.p.pid)}.{accession}"
        segs = [self.pid(), self.pv1_out(dept, doctor) if not inpatient else
                seg("PV1", {19: self.visit, 1: "0001", 2: "I", 7: doctor.xcn, 10: dept}),
                self.orc("SC", order_no, at, doctor, dept, inpatient, filler=accession, status="CM"),
                seg("TQ1", {1: "1", 7: ts(done, 12), 9: "R^ルーチン^HL70485"}),
                seg("OBR", {1: "1", 2: order_no, 3: accession, 4: cwe(code, name, system),
                            7: ts(done, 12), 16: doctor.xcn, 22: ts(at), 25: "F"}),
                seg("OBX", {1: "1", 2: "ST", 3: "02^所見^99RAD", 5: finding, 11: "F"}),
                seg("ZE1", {1: "1", 2: "RS", 3: cwe(code, name, system), 4: "1"}),
                seg("IPC", {1: accession, 3: uid, 5: f"{modality}^^DCM"})]
        return self._msg(at, "OMI^Z23^OMI_Z23", *segs)

    # -- OMG-03 生理検査オーダ / OMG-13 生理検査結果 (12-lead ECG) ------------------------------
    def omg03(self, at: datetime, order_no: str, planned: datetime, dept: str, doctor: Doctor) -> str:
        segs = [self.pid(), self.pv1_out(dept, doctor),
                self.orc("NW", order_no, at, doctor, dept, False),
                seg("TQ1", {1: "1", 7: ts(planned, 12), 9: "R^ルーチン^HL70485"}),
                seg("OBR", {1: "1", 2: order_no, 4: cwe(*C.ECG, "JC10"), 13: "定期評価",
                            16: doctor.xcn, 36: ts(planned, 12)})]
        return self._msg(at, "OMG^O19^OMG_O19", *segs)

    def omg13(self, at: datetime, order_no: str, done: datetime, dept: str, doctor: Doctor,
              values: list[tuple[str, str, str, str, str, str]], conclusion: str) -> str:
        segs = [self.pid(), self.pv1_out(dept, doctor),
                self.orc("SC", order_no, at, doctor, dept, False, filler=f"P{order_no[-10:]}",
                         status="CM"),
                seg("OBR", {1: "1", 2: order_no, 3: f"P{order_no[-10:]}", 4: cwe(*C.ECG, "JC10"),
                            7: ts(done, 12), 16: doctor.xcn, 22: ts(at), 24: "EC", 25: "F"}),
                seg("NTE", {1: "1", 3: conclusion})]
        for i, (code, name, value, unit, rng, flag) in enumerate(values, 1):
            segs.append(seg("OBX", {1: str(i), 2: "NM", 3: cwe(code, name, "99MFR"), 4: "1", 5: value,
                                    6: f"{unit}^{unit}^ISO+", 7: rng, 8: flag, 11: "F",
                                    14: ts(done, 12)}))
        return self._msg(at, "ORU^R01^ORU_R01", *segs)

    # -- OMD 食事 -----------------------------------------------------------------------------
    def omd(self, at: datetime, order_no: str, diet: tuple[str, str], start: datetime, dept: str,
            doctor: Doctor, loc: str, cancel: bool = False) -> str:
        segs = [self.pid(), seg("PV1", {19: self.visit, 1: "0001", 2: "I", 3: loc, 7: doctor.xcn, 10: dept}),
                self.orc("CA" if cancel else "NW", order_no, at, doctor, dept, True, location=loc),
                seg("TQ1", {1: "1", 3: "TID&１日３回&HL70335", 7: ts(start, 12)}),
                seg("ODS", {1: "D", 3: cwe(diet[0], diet[1], "99DIET"), 4: diet[1]})]
        return self._msg(at, "OMD^O03^OMD_O03", *segs)

    # -- extended storage: vitals (ORU^R30, NHO layout) ----------------------------------------
    def vitals(self, at: datetime, key: str, rows: list[tuple], dept: str, doctor: Doctor,
               loc: str) -> str:
        segs = [self.pid(), seg("PV1", {19: self.visit, 1: "0001", 2: "I", 3: loc, 7: doctor.xcn, 10: dept}),
                self.orc("SC", key, at, doctor, dept, True, status="CM", location=loc),
                seg("OBR", {1: "1", 2: key, 4: "01^バイタル^99ZL01", 7: ts(rows[0][0], 12),
                            8: ts(rows[-1][0], 12), 16: doctor.xcn, 22: ts(at)})]
        for i, (when, code, name, unit, unit_text, ref, value, flag) in enumerate(rows, 1):
            segs.append(seg("OBX", {1: str(i), 2: "NM", 3: f"{code}^{name}^JC10", 5: value,
                                    6: f"{unit}^{unit_text}^ISO+", 7: ref, 8: flag, 11: "F",
                                    14: ts(when, 12)}))
        return self._msg(at, "ORU^R30^ORU_R30", *segs)
