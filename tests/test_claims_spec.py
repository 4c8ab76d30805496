"""The one spec per claim (goldilocks.claims_spec) agrees with the schema's claims: block
and with docs/claims.md's tables."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from conftest import heavy_imports

from goldilocks.claims_spec import COMPARATORS, DEFAULT_THRESHOLDS, SPECS, resolve_thresholds
from goldilocks.decision import RULES

ROOT = Path(__file__).resolve().parents[1]


def _docs_rows(heading: str) -> dict[str, list[str]]:
    """The rows of the first table under ``heading`` in docs/claims.md, by first cell."""
    text = (ROOT / "docs/claims.md").read_text()
    lines = iter(text.split(f"\n{heading}", 1)[1].splitlines())
    for line in lines:  # to the table's header row
        if line.startswith("|"):
            break
    next(lines)  # its |---| row
    rows = {}
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    return rows


def test_every_spec_is_complete():
    ids = [s.id for s in SPECS]
    assert len(ids) == len(set(ids))
    for s in SPECS:
        assert s.variants and s.scalings and s.description
        assert s.comparator in COMPARATORS and s.rule in RULES
        assert s.threshold in DEFAULT_THRESHOLDS and s.default == DEFAULT_THRESHOLDS[s.threshold]
        assert re.match(r"(\d\.\d|App\. [A-I]|Abstract)", s.section), s.section
        assert callable(s.measure) and callable(s.calibration)


def test_schema_claims_block_is_the_spec_table():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    block = schema["properties"]["claims"]["properties"]
    assert set(block) == set(DEFAULT_THRESHOLDS)
    for key, value in DEFAULT_THRESHOLDS.items():
        assert block[key]["default"] == value, key
        assert block[key]["description"], key
    used = {s.threshold for s in SPECS}
    assert used <= set(block)
    assert resolve_thresholds({k: v["default"] for k, v in block.items()}) == DEFAULT_THRESHOLDS


def test_docs_claims_table_is_the_spec_table():
    rows = _docs_rows("## The claims")
    assert list(rows) == [s.id for s in SPECS]  # same claims, same order
    for s in SPECS:
        cells = rows[s.id]
        section, _, variants, statistic, comparator, key, rule = cells[1:8]
        assert section == s.section, s.id
        assert all(v in variants for v in s.variants), s.id
        assert all(sc in variants for sc in s.scalings), s.id
        assert comparator == f"`{s.comparator}`", s.id
        assert key == f"`{s.threshold}` ({s.default:g})", s.id
        assert rule == f"`{s.rule}`", s.id
        assert statistic, s.id


def test_docs_threshold_table_is_the_defaults():
    rows = _docs_rows("## Thresholds")
    assert {k.removeprefix("claims.") for k in rows} == set(DEFAULT_THRESHOLDS)
    for key, value in DEFAULT_THRESHOLDS.items():
        assert rows[f"claims.{key}"][1] == f"{value:g}", key


def test_claims_import_without_torch_or_matplotlib():
    """The claims job imports matplotlib itself (Agg) for the figure; nothing else does."""
    assert (
        heavy_imports(
            "goldilocks.claims", "goldilocks.claims_report", "goldilocks.claims_calibration"
        )
        == []
    )
