"""Code and identifier systems: the one place where SS-MIX2 names meet JP Core URIs."""

from __future__ import annotations

from storage.memo import memo

JP_CORE = "http://jpfhir.jp/fhir/core"
SD = f"{JP_CORE}/StructureDefinition/"

# Local code systems (CWE.3 starting with "99", or names we do not know) are kept, never dropped,
# under this documented base: {LOCAL_BASE}/{facility}/{coding system name}.
LOCAL_BASE = "http://fhir-gateway.example.org/CodeSystem/local"
# National JAHIS / MML user tables that JP Core defines no CodeSystem for (JHSP0003 処方区分,
# JHSP0005, JHSI0002 注射種別, JHSI0009, JHSD0001/0004/0005/0007 ...): {TABLE_BASE}/{name}.
# Only the tables listed in CODE_SYSTEMS get a jpfhir.jp URI - a made-up JP Core URI would not
# resolve on any terminology server.
TABLE_BASE = "http://fhir-gateway.example.org/CodeSystem/ssmix2-table"
# Extensions for SS-MIX2 content JP Core has no element for (documented in docs/mapping.md):
# {LOCAL_EXT}{name}, e.g. dosage-administration-device (RXR-3), ingredient-supplementary-code.
LOCAL_EXT = "http://fhir-gateway.example.org/StructureDefinition/"

# JP Core profile canonical URLs
PROFILE = {
    "Patient": SD + "JP_Patient",
    "Condition": SD + "JP_Condition",
    "AllergyIntolerance": SD + "JP_AllergyIntolerance",
    "MedicationRequest": SD + "JP_MedicationRequest",
    "MedicationRequestInjection": SD + "JP_MedicationRequest_Injection",
    "MedicationAdministration": SD + "JP_MedicationAdministration",
    "MedicationAdministrationInjection": SD + "JP_MedicationAdministration_Injection",
    "MedicationDispense": SD + "JP_MedicationDispense",
    "Medication": SD + "JP_Medication",
    "Immunization": SD + "JP_Immunization",
    "ObservationLabResult": SD + "JP_Observation_LabResult",
    "ObservationCommon": SD + "JP_Observation_Common",
    "ObservationBodyMeasurement": SD + "JP_Observation_BodyMeasurement",
    "ObservationVitalSigns": SD + "JP_Observation_VitalSigns",
    "DiagnosticReportLabResult": SD + "JP_DiagnosticReport_LabResult",
    "DiagnosticReportRadiology": SD + "JP_DiagnosticReport_Radiology",
    "DiagnosticReport": SD + "JP_DiagnosticReport_Common",
    "ImagingStudy": SD + "JP_ImagingStudy_Radiology",
    "Procedure": SD + "JP_Procedure",
    "ServiceRequest": SD + "JP_ServiceRequest_Common",
    "Specimen": SD + "JP_Specimen_Common",
    "Encounter": SD + "JP_Encounter",
    "Coverage": SD + "JP_Coverage",
    "Organization": SD + "JP_Organization",
    "Practitioner": SD + "JP_Practitioner",
    "Location": SD + "JP_Location",
}

# SS-MIX2 CWE coding-system names -> FHIR system URIs (reference/fhir-mapping.md §2.4)
CODE_SYSTEMS: dict[str, str] = {
    "HOT": "http://medis.or.jp/CodeSystem/master-HOT9",
    "HOT9": "http://medis.or.jp/CodeSystem/master-HOT9",
    "HOT09": "http://medis.or.jp/CodeSystem/master-HOT9",
    "HOT7": "http://medis.or.jp/CodeSystem/master-HOT7",
    "HOT07": "http://medis.or.jp/CodeSystem/master-HOT7",
    "HOT11": "http://medis.or.jp/CodeSystem/master-HOT11",
    "HOT13": "http://medis.or.jp/CodeSystem/master-HOT13",
    "YJ": "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code",
    "MYAK": "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code",
    "MDCDX2": "http://medis.or.jp/CodeSystem/master-disease-keyNumber",
    "I10": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full",
    "JC10": "http://medis.or.jp/CodeSystem/master-JLAC10-17digits",
    "JAMISDP01": "http://jami.jp/CodeSystem/MedicationUsage",
    "HL70162": "http://jpfhir.jp/fhir/core/CodeSystem/route-codes",
    "HL70482": "http://terminology.hl7.org/CodeSystem/v2-0482",
    "HL70127": "http://terminology.hl7.org/CodeSystem/v2-0127",
    "HL70128": "http://terminology.hl7.org/CodeSystem/v2-0128",
    "HL70063": "http://terminology.hl7.org/CodeSystem/v2-0063",
    "HL70164": "http://terminology.hl7.org/CodeSystem/v2-0164",
    "HL70069": "http://jami.jp/SS-MIX2/CodeSystem/ClinicalDepartment",
    "HL70241": "http://jpfhir.jp/fhir/core/CodeSystem/HL70241",
    "JHSD0006": "http://jpfhir.jp/fhir/core/CodeSystem/JHSD0006",
    "JHSP0002": "http://jpfhir.jp/fhir/core/CodeSystem/JHSP0002",
    "JHSI0001": "http://jpfhir.jp/fhir/core/CodeSystem/JHSI0001",
    "JHSI0003": "http://jpfhir.jp/fhir/core/CodeSystem/JHSI0003",
    "JHSP0007": "http://jpfhir.jp/fhir/core/CodeSystem/JHSP0007",
    "JJ1017": "http://jpfhir.jp/fhir/core/CodeSystem/JJ1017",
    "ISO+": "http://unitsofmeasure.org",
    "UCUM": "http://unitsofmeasure.org",
    "MR9P": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUnitMERIT9Code",
    "LN": "http://loinc.org",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
}

# Identifier systems
PATIENT_ID_OID = "urn:oid:1.2.392.100495.20.3.51.1"  # + 10-digit facility code
PRESCRIPTION_ID_OID = "urn:oid:1.2.392.100495.20.3.11.1"
PRACTITIONER_ID_OID = "urn:oid:1.2.392.100495.20.3.41.1"
RP_NUMBER = f"{JP_CORE}/mhlw/IdSystem/Medication-RPGroupNumber"
ORDER_IN_RP = f"{JP_CORE}/mhlw/IdSystem/MedicationAdministrationIndex"
RESOURCE_INSTANCE = f"{JP_CORE}/IdSystem/resourceInstance-identifier"
MEDICAL_INSTITUTION = f"{JP_CORE}/IdSystem/insurance-medical-institution-no"
INSURER_NUMBER = f"{JP_CORE}/mhlw/IdSystem/InsurerNumber"
INSURED_SYMBOL = f"{JP_CORE}/mhlw/IdSystem/InsuredPersonSymbol"
INSURED_NUMBER = f"{JP_CORE}/mhlw/IdSystem/InsuredPersonNumber"
PUBLIC_PAYER = f"{JP_CORE}/mhlw/IdSystem/PublicPayerNumber"
PUBLIC_RECIPIENT = f"{JP_CORE}/mhlw/IdSystem/PublicInsuredPersonNumber"
DEPARTMENT = "http://jami.jp/SS-MIX2/CodeSystem/ClinicalDepartment"
NAME_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"

# Standard FHIR code systems used across mappers
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
JP_OBSERVATION_CATEGORY = f"{JP_CORE}/CodeSystem/JP_SimpleObservationCategory_CS"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
UCUM = "http://unitsofmeasure.org"
V2_0443 = "http://terminology.hl7.org/CodeSystem/v2-0443"  # provider role (AP, OP ...)

# Medication (JP Core): units, categories, extensions
MERIT9_UNIT = f"{JP_CORE}/mhlw/CodeSystem/MedicationUnitMERIT9Code"
MERIT9_CATEGORY = f"{JP_CORE}/CodeSystem/JP_MedicationCategoryMERIT9_CS"
MERIT9_FORM = f"{JP_CORE}/CodeSystem/JP_MedicationFormMERIT9_CS"  # 剤形 (RXE-6 ...^MR9P)
MEDICATION_REQUEST_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
JP_EXT = f"{JP_CORE}/Extension/StructureDefinition/"
DIAGNOSTIC_SERVICE_SECTION = "http://terminology.hl7.org/CodeSystem/v2-0074"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
SNOMED = "http://snomed.info/sct"

# Business identifiers with no national system (order numbers, specimen ids) are kept under
# {LOCAL_ID_BASE}/{facility}/{kind}, e.g. .../1312345678/placer-order-number.
LOCAL_ID_BASE = "http://fhir-gateway.example.org/IdSystem/local"


def local_id_system(facility: str, kind: str) -> str:
    return f"{LOCAL_ID_BASE}/{facility or 'unknown'}/{kind}"


def patient_identifier_system(facility: str) -> str:
    return PATIENT_ID_OID + facility


@memo(4096)
def system_for(name: str, facility: str = "") -> str | None:
    """FHIR system URI for an SS-MIX2 coding-system name; local names get a local URI.

    Cached (pure: a string from two strings; CODE_SYSTEMS is complete once mappers are imported).
    """
    if not name:
        return None
    known = CODE_SYSTEMS.get(name) or CODE_SYSTEMS.get(name.upper())
    if known:
        return known
    if name.startswith("HL7") and name[3:].isdigit():
        return f"http://terminology.hl7.org/CodeSystem/v2-{name[3:]}"
    if name.startswith(("JHS", "MML")) and name.isalnum():
        return f"{TABLE_BASE}/{name}"
    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in name)
    return f"{LOCAL_BASE}/{facility or 'unknown'}/{safe}"


def is_local(name: str) -> bool:
    return name.startswith("99") or system_for(name, "").startswith(LOCAL_BASE)  # type: ignore[union-attr]


# --- UKE receipts -> Claim (mappers/claim.py; docs/receipts.md) ---------------------------------
# JP Core defines URIs for the receipt disease/modifier/procedure masters; the drug, device,
# comment masters and the UKE code tables (診療識別, 負担区分, レセプト種別, 点数表) have none,
# so they live under a documented local base.
RECEIPT_DISEASE = f"{JP_CORE}/mhlw/CodeSystem/masterB-disease"
RECEIPT_DISEASE_MODIFIER = f"{JP_CORE}/mhlw/CodeSystem/masterZ-disease-modifier"
RECEIPT_PROCEDURE = f"{JP_CORE}/mhlw/CodeSystem/masterS-medicalProcedure"
UKE_BASE = "http://fhir-gateway.example.org/CodeSystem/uke"
RECEIPT_DRUG = f"{UKE_BASE}/masterY-medicine"
RECEIPT_DEVICE = f"{UKE_BASE}/masterT-device"
RECEIPT_COMMENT = f"{UKE_BASE}/masterC-comment"
RECEIPT_DENTAL_PROCEDURE = f"{UKE_BASE}/masterS-dentalProcedure"
RECEIPT_TYPE = f"{UKE_BASE}/receipt-type"  # RE-3 レセプト種別
RECEIPT_CATEGORY = f"{UKE_BASE}/medical-identification"  # 診療識別
RECEIPT_BURDEN = f"{UKE_BASE}/burden-class"  # 負担区分
RECEIPT_TENSUHYO = f"{UKE_BASE}/tensuhyo"  # IR-4 点数表
RECEIPT_OUTCOME = f"{UKE_BASE}/outcome"  # SY-4 転帰区分
RECEIPT_NUMBER = "http://fhir-gateway.example.org/IdSystem/uke/receipt-number"
UKE_EXT = "http://fhir-gateway.example.org/StructureDefinition/uke-"  # + element name
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
CLAIM_INFO_CATEGORY = "http://terminology.hl7.org/CodeSystem/claiminformationcategory"
DIAGNOSIS_TYPE = "http://terminology.hl7.org/CodeSystem/ex-diagnosistype"
PROCESS_PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"

# --- extended storage (mappers/extended.py; docs/extended-storage.md) ---------------------------
DOCUMENT_TYPE_LOCAL = "http://fhir-gateway.example.org/CodeSystem/extended-storage-type"

# --- ADT / PPR / OMD / OMG (mappers/adt_00.py, adt_61.py, ppr_01.py, encounter.py, omd.py, omg.py) --
PROFILE.setdefault("ConditionDiagnosis", SD + "JP_Condition_Diagnosis")
PROFILE.setdefault("ImagingStudyEndoscopy", SD + "JP_ImagingStudy_Endoscopy")
PROFILE.setdefault("DiagnosticReportEndoscopy", SD + "JP_DiagnosticReport_Endoscopy")

# Observation categories and codes (JP Core body measurement; JP-CLINS core-lab blood type)
BODY_MEASUREMENT_CODE = f"{JP_CORE}/CodeSystem/JP_ObservationBodyMeasurementCode_CS"
BODY_MEASUREMENT_CATEGORY = f"{JP_CORE}/CodeSystem/JP_ObservationBodyMeasurementCategory_CS"
CLINS_CORE_LAB = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS"
JLAC10 = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"
# JLAC10 prefix -> (JP Core MEDIS body-measurement code, display, body-measurement category)
BODY_MEASUREMENTS: dict[str, tuple[str, str, str]] = {
    "9N001": ("31000298", "身長", "height"),
    "9N006": ("31000296", "体重", "weight"),
}
# JLAC10 prefix -> (JP-CLINS core-lab code, display)
BLOOD_TYPES: dict[str, tuple[str, str]] = {
    "5H010": ("5H010000001910114", "ABO-BLD"),
    "5H020": ("5H020000001910114", "Rh-BLD"),
}

# OBX-11 / OBR-25 result status -> Observation.status / DiagnosticReport.status
OBSERVATION_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "R": "registered",
                      "I": "registered", "S": "preliminary", "A": "preliminary", "X": "cancelled",
                      "D": "entered-in-error", "W": "entered-in-error", "U": "final", "N": "final",
                      "O": "registered"}
REPORT_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "R": "registered",
                 "I": "registered", "S": "partial", "A": "partial", "X": "cancelled",
                 "O": "registered", "D": "entered-in-error", "W": "entered-in-error"}

# Patient / contact / coverage
GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}
SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
# HL7 table 0063 -> subscriber-relationship
RELATIONSHIP_0063 = {"SEL": "self", "SPO": "spouse", "DOM": "common", "CHD": "child",
                     "FCH": "child", "SCH": "child", "PAR": "parent", "MTH": "parent",
                     "FTH": "parent", "EME": "other", "EMR": "other", "OTH": "other"}
COVERAGE_INSURED_SYMBOL = JP_EXT + "JP_Coverage_InsuredPersonSymbol"
COVERAGE_INSURED_NUMBER = JP_EXT + "JP_Coverage_InsuredPersonNumber"
COVERAGE_INSURED_SUBNUMBER = JP_EXT + "JP_Coverage_InsuredPersonSubNumber"
PATIENT_DISABILITY = "http://hl7.org/fhir/StructureDefinition/patient-disability"

# AllergyIntolerance (HL7 tables 0127 allergen type, 0128 severity, 0438 clinical status)
# MA (miscellaneous allergy) and MC (miscellaneous contraindication) have no FHIR category:
# the allergen code and text say what it is, a guessed "medication" would be wrong.
ALLERGY_CATEGORY_0127 = {"DA": "medication", "FA": "food",
                         "EA": "environment", "LA": "environment", "PA": "environment",
                         "AA": "biologic"}
ALLERGY_SEVERITY_0128 = {"MI": "mild", "MO": "moderate", "SV": "severe"}
ALLERGY_TYPE_0436 = {"AD": "allergy", "AL": "allergy", "DA": "allergy", "FA": "allergy",
                     "IN": "intolerance", "FI": "intolerance", "CT": "intolerance"}
ALLERGY_VERIFICATION_0438 = {"C": "confirmed", "U": "unconfirmed", "P": "unconfirmed",
                             "S": "unconfirmed", "D": "refuted", "E": "entered-in-error",
                             "I": "entered-in-error"}

# Condition (JP_Condition_Diagnosis)
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
DISEASE_KEY_NUMBER = "http://medis.or.jp/CodeSystem/master-disease-keyNumber"
DISEASE_EXCHANGE = "http://medis.or.jp/CodeSystem/master-disease-exCode"
MODIFIER_KEY_NUMBER = "http://medis.or.jp/CodeSystem/master-disease-modKeyNumber"
MODIFIER_EXCHANGE = "http://medis.or.jp/CodeSystem/master-disease-modExCode"
CONDITION_PREFIX_EXT = JP_EXT + "JP_Condition_DiseasePrefixModifier"
CONDITION_POSTFIX_EXT = JP_EXT + "JP_Condition_DiseasePostfixModifier"
CONDITION_OUTCOME_EXT = JP_EXT + "JP_Condition_DiseaseOutcome"
# 転帰 (PRB-14: HL7 0241 or JHSD0006) -> Condition.clinicalStatus
CONDITION_OUTCOME_STATUS = {
    "HL70241": {"F": "resolved", "S": "remission", "R": "active", "N": "active",
                "W": "active", "D": "inactive", "U": "active"},
    "JHSD0006": {"M": "remission", "I": "inactive", "C": "active", "O": "inactive"},
}

# Encounter
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENCOUNTER_CLASS_0004 = {"I": ("IMP", "inpatient encounter"), "O": ("AMB", "ambulatory"),
                        "E": ("EMER", "emergency"), "P": ("PRENC", "pre-admission"),
                        "R": ("IMP", "inpatient encounter"), "B": ("AMB", "ambulatory")}

# Orders (ORC-1 order control, ORC-5 order status) -> request status
REQUEST_PRIORITY_0485 = {"S": "stat", "A": "asap", "R": "routine", "P": "routine",
                         "C": "urgent", "T": "urgent"}
# Which SS-MIX2 data type a resource came from; a category every order/report carries.
SSMIX2_DATA_TYPE = "http://fhir-gateway.example.org/CodeSystem/ssmix2-data-type"
# JP-CLINS/eCS department extension (the ordering department, ORC-17) - context unverified.
REQUEST_DEPARTMENT_EXT = "http://jpfhir.jp/fhir/eCS/Extension/StructureDefinition/JP_eCS_Department"
DICOM_UID = "urn:dicom:uid"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"


def request_status(orc1: str, orc5: str = "") -> str:
    """ORC-1 (order control) and ORC-5 (order status) -> ServiceRequest/NutritionOrder status.

    Cancels and discontinues win; then a completed/in-process ORC-5; new, parent, child and
    status-changed orders are active.
    """
    if orc1 in ("CA", "OC", "CR", "DC", "DR", "OD", "UA"):
        return "revoked"
    if orc1 in ("HD", "OH"):
        return "on-hold"
    if orc5 in ("CA", "DC"):
        return "revoked"
    if orc5 == "CM":
        return "completed"
    if orc5 == "HD":
        return "on-hold"
    return "active"

# meta.tag system saying where a resource came from when it is not a plain mapping of its file
ORIGIN_TAG_SYSTEM = "http://fhir-gateway.example.org/CodeSystem/origin"
