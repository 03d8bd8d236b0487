"""The rule registry: the docs' table is the registry's, a registered rule reaches diagnose and the
export, thresholds are one overridable dataclass, and diagnose splits a restarted input."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from neurontop import cli
from neurontop.core.analysis import rules
from neurontop.core.analysis.diagnose import diagnose
from neurontop.core.analysis.hints import compute
from neurontop.core.analysis.rules import Evidence, Hint, Phase, Rule
from neurontop.core.analysis.thresholds import DEFAULTS
from neurontop.core.telemetry.sample import Decoder

from .conftest import make_reports, strip_extension

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_cause_table_is_the_registrys() -> None:
    doc = (ROOT / "docs" / "hints.md").read_text()
    table = rules.causes_table()
    assert table in doc, "docs/hints.md: regenerate the table with python -m neurontop.core.analysis.rules"
    assert [line.split("`")[1] for line in table.splitlines()[2:]] == list(rules.causes())


def _decoded(lines: list[bytes]):
    d = Decoder()
    return [d.decode(x) for x in lines]


def _low_host_rule() -> Rule:
    """A cause the project does not have: below the threshold with the host CPU under 99 % busy."""
    def evaluate(st, th, found):
        if st.host_busy >= 99:
            return None
        return Hint("test_low_host", "bottleneck", "critical", 0.5, "a test cause",
                    (Evidence("host CPU busy", st.host_busy, "%"),), "none", "vcpu", 2.0)
    return Rule("test_low_host", "bottleneck", Phase.PRIMARY, "vcpu", (), "no", lambda th: "test", "test", evaluate)


def test_a_registered_rule_reaches_diagnose_json_and_the_csv(tmp_path, capsys) -> None:
    log = tmp_path / "run.jsonl"
    log.write_bytes(b"\n".join(make_reports("trn1.2xlarge", "host_sync", 20)) + b"\n")
    out = tmp_path / "out.csv"
    with rules.registered(_low_host_rule()):
        assert cli.main(["diagnose", str(log), "--json"]) == 1
        d = json.loads(capsys.readouterr().out)
        assert cli.main(["export", str(log), "-o", str(out), "--fields", "hints"]) == 0
    assert d["findings"][0]["cause"] == "test_low_host"  # its score (2.0) ranks it first
    rows = list(csv.DictReader(out.open()))
    assert "hint_test_low_host" in rows[0]
    # from the first row: a stream younger than the 3 s hysteresis shows its answer at once
    assert rows[-1]["hint_test_low_host"] == "1" and rows[0]["hint_test_low_host"] == "1"
    assert "test_low_host" not in rules.causes()  # gone with the with-block
    assert cli.main(["export", str(log), "-o", str(out), "--fields", "hints"]) == 0
    assert "hint_test_low_host" not in out.read_text().splitlines()[0]


def test_a_rule_cannot_be_registered_twice() -> None:
    try:
        rules.add(dataclasses.replace(_low_host_rule(), cause="communication"))
    except ValueError as exc:
        assert "communication" in str(exc)
    else:
        raise AssertionError("a second rule for a cause was accepted")


def test_thresholds_are_one_overridable_dataclass() -> None:
    samples = _decoded(make_reports("trn1.32xlarge", "comm_bound", 20))
    assert compute(samples)[0].cause == "communication"
    stricter = dataclasses.replace(DEFAULTS, exposed_comm=0.99)
    assert "communication" not in {h.cause for h in compute(samples, stricter)}
    assert all(h.kind == "advisory" for h in compute(samples, dataclasses.replace(DEFAULTS, util_below=1.0)))


def test_two_concatenated_logs_are_two_segments_with_their_own_findings() -> None:
    a = make_reports("trn1.32xlarge", "straggler", 30)
    b = make_reports("trn1.32xlarge", "idle_cores", 30)  # its time starts at 1 s again
    d = diagnose(_decoded(a + b)).to_dict()
    assert [s["reason"] for s in d["segments"]] == ["start", "time went back"]
    assert [s["first_sample"] for s in d["segments"]] == [1, 31]
    assert d["segments"][0]["findings"][0]["cause"] == "straggler"
    assert d["segments"][1]["findings"][0]["cause"] == "idle_cores"
    assert "idle_cores" not in {f["cause"] for f in d["segments"][0]["findings"]}
    assert {f["segment"] for f in d["findings"]} == {0, 1}
    one = diagnose(_decoded(a)).to_dict()
    assert len(one["segments"]) == 1 and "segment" not in one["findings"][0]


def test_plain_logs_of_two_instances_are_two_segments() -> None:
    """Plain neuron-monitor reports have no clock of their own (time is counted by periods, so it
    never goes back): the instance id tells two machines' logs apart."""
    a = strip_extension(make_reports("trn1.32xlarge", "straggler", 20))
    b = []
    for x in strip_extension(make_reports("trn1.32xlarge", "idle_cores", 20)):
        doc = json.loads(x)
        doc["instance_info"]["instance_id"] = "i-0other"
        b.append(json.dumps(doc).encode())
    d = diagnose(_decoded(a + b)).to_dict()
    assert [s["reason"] for s in d["segments"]] == ["start", "new instance"]
    assert d["segments"][1]["instance_id"] == "i-0other"
    assert d["segments"][0]["findings"][0]["cause"] == "straggler"
    assert d["segments"][1]["findings"][0]["cause"] == "idle_cores"
