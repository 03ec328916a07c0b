"""Group DICOM instances into cases: one per series (its middle instance) or per instance."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from medcap.config import DicomUnit
from medcap.data.dicom.instances import InstanceInfo
from medcap.data.dicom.pseudonyms import PseudonymKey


@dataclass(frozen=True)
class DicomCase:
    """One case: its pseudonymous id and the instance whose image represents it."""

    case_id: str
    instance: InstanceInfo
    instances: int  # how many instances the case stands for


def _order(info: InstanceInfo) -> tuple[int, int, str]:
    number = info.instance_number
    return (0 if number is not None else 1, number or 0, info.sop_uid)


def group_cases(
    instances: Iterable[InstanceInfo], unit: DicomUnit, key: PseudonymKey
) -> list[DicomCase]:
    """Cases of `instances` ordered by case id (a stable order whatever the listing order).

    A series is represented by its middle instance by InstanceNumber (a multi-frame
    instance's middle frame is chosen when it is decoded).
    """
    if unit == "instance":
        cases = [DicomCase(key.pseudonym("instance", i.sop_uid), i, 1) for i in instances]
    else:
        series: dict[str, list[InstanceInfo]] = defaultdict(list)
        for info in instances:
            series[info.series_uid].append(info)
        cases = []
        for uid, members in series.items():
            members.sort(key=_order)
            middle = members[(len(members) - 1) // 2]
            cases.append(DicomCase(key.pseudonym("series", uid), middle, len(members)))
    unique = {c.case_id: c for c in cases}  # the same instance twice (copied file): once
    return [unique[k] for k in sorted(unique)]
