"""The --report check (goldilocks.reporting): which command lines ask for a report, and
the one line naming a missing target and the run's --configfile."""

import pytest

from goldilocks.reporting import record_run, report_path, report_problem


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (["snakemake", "--report", "r.html", "--cores", "1"], "r.html"),
        (["snakemake", "--report=out/r.zip"], "out/r.zip"),
        (["snakemake", "--report", "--cores", "1"], "report.html"),
        (["snakemake", "--report-after-run", "--report", "x.html"], "x.html"),
        (["snakemake", "--report-after-run"], None),
        (["snakemake", "-n"], None),
    ],
)
def test_report_path(argv, path):
    assert report_path(argv) == path


def test_report_problem_names_the_missing_file_and_the_last_runs_configfile(tmp_path):
    done, missing = tmp_path / "done.png", tmp_path / "missing.png"
    done.write_text("x")
    record = tmp_path / ".last_run.yaml"
    assert report_problem([str(done)], [], "r.html", str(record)) is None
    # No record: the generic hint.
    line = report_problem([str(done), str(missing)], [], "r.html", str(record))
    assert line.startswith(f"--report: {missing} does not exist;") and "\n" not in line
    assert "--configfile <the run's config>" in line
    record_run(["configs/tiny.yaml"], str(record))
    line = report_problem([str(missing), str(missing)], [], "r.html", str(record))
    assert "(and 1 more of this config's targets)" in line
    assert line.endswith(
        "the last run here used --configfile configs/tiny.yaml: pass the same, "
        "`snakemake --report r.html --configfile configs/tiny.yaml`"
    )
    # The same files as the run: nothing to name but the missing file.
    line = report_problem([str(missing)], ["configs/tiny.yaml"], "r.html", str(record))
    assert "run the workflow first" in line


def test_a_damaged_run_record_gives_the_generic_hint(tmp_path):
    record = tmp_path / ".last_run.yaml"
    record.write_text("configfiles: [unclosed\n")
    line = report_problem([str(tmp_path / "x.png")], [], "r.html", str(record))
    assert "--configfile <the run's config>" in line and "\n" not in line
