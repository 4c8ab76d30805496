"""The claims as a reader sees them: the HTML page of the report and the claims figure
(docs/claims.md, "Reading the results").

:func:`claims_html` opens with a grid of claims against variants, each cell coloured by
the verdict of every scaling the claim was tested under there, and the share of rows
decided; the table of every row with its per-seed columns follows. :func:`claims_figure`
draws, per claim, every testable row's per-seed values and their range against the
threshold, coloured by verdict. matplotlib is imported by :func:`claims_figure` only;
the caller picks the backend (the claims job uses Agg).
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from goldilocks.decision import INCONCLUSIVE, NOT_SUPPORTED, NOT_TESTABLE, SUPPORTED, VERDICTS

#: Background of each verdict in the page, and its colour in the figure.
VERDICT_COLOURS = {
    SUPPORTED: "#d8f0d8",
    NOT_SUPPORTED: "#f6d5d5",
    INCONCLUSIVE: "#fbecc4",
    NOT_TESTABLE: "#eeeeee",
}
MARKER_COLOURS = {
    SUPPORTED: "#2e8b3e",
    NOT_SUPPORTED: "#c0392b",
    INCONCLUSIVE: "#d4a017",
    NOT_TESTABLE: "#999999",
}
SHORT = {SUPPORTED: "S", NOT_SUPPORTED: "N", INCONCLUSIVE: "I", NOT_TESTABLE: "-"}


def decided_share(claims: pd.DataFrame) -> tuple[int, int, int]:
    """(decided rows, testable rows, all rows): decided = supported or not_supported."""
    decided = int(claims["verdict"].isin([SUPPORTED, NOT_SUPPORTED]).sum())
    testable = int((claims["verdict"] != NOT_TESTABLE).sum())
    return decided, testable, len(claims)


def summary_line(claims: pd.DataFrame) -> str:
    counts = claims["verdict"].value_counts().reindex(list(VERDICTS), fill_value=0)
    words = ", ".join(f"{n} {verdict.replace('_', ' ')}" for verdict, n in counts.items())
    decided, testable, total = decided_share(claims)
    share = f"{decided / testable:.0%}" if testable else "n/a"
    return f"{words}; {decided} of {testable} testable rows decided ({share}; {total} rows)"


def _grid(claims: pd.DataFrame) -> str:
    """Claims x variants; per cell one box per scaling, coloured and lettered by verdict."""
    variants = list(dict.fromkeys(claims["variant"]))
    head = "".join(f"<th>{html.escape(v)}</th>" for v in variants)
    rows = []
    for claim, group in claims.groupby("claim", sort=False):
        cells = []
        for variant in variants:
            hits = group[group["variant"] == variant]
            boxes = "".join(
                f"<span title='{html.escape(f'{r.scaling} ({r.dataset}): {r.verdict}')}' "
                f"style='background:{VERDICT_COLOURS[r.verdict]};padding:1px 4px;"
                f"margin:1px;border:1px solid #bbb'>{SHORT[r.verdict]}"
                f"<sub>{html.escape(str(r.scaling)[:4])}</sub></span>"
                for r in hits.itertuples()
            )
            cells.append(f"<td>{boxes}</td>")
        rows.append(
            f"<tr><th style='text-align:left'>{html.escape(claim)}</th>{''.join(cells)}</tr>"
        )
    legend = " ".join(
        f"<span style='background:{VERDICT_COLOURS[v]};padding:1px 4px'>{SHORT[v]} {v}</span>"
        for v in VERDICTS
    )
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table><p>{legend}</p>"


def _number(v) -> str:
    return f"{v:.4g}" if isinstance(v, float | int | np.floating) and pd.notna(v) else ""


def claims_html(claims: pd.DataFrame) -> str:
    """The claims table as a self-contained HTML page (for ``snakemake --report``)."""
    shown = claims.drop(columns=["paper_text"]).copy()
    for column in ("value", "threshold", "ci_low", "ci_high"):
        shown[column] = shown[column].map(_number)
    shown["value_per_seed"] = shown["value_per_seed"].map(
        lambda values: ", ".join(_number(float(v)) for v in values)
    )
    shown["seeds"] = shown["seeds"].map(lambda seeds: ", ".join(str(int(s)) for s in seeds))
    rows = shown.style.hide(axis="index").apply(
        lambda row: [f"background-color: {VERDICT_COLOURS[row['verdict']]}"] * len(row), axis=1
    )
    texts = claims.drop_duplicates("claim")[["claim", "paper_text"]]
    quotes = "".join(
        f"<li><b>{html.escape(c)}</b>: {html.escape(t)}</li>"
        for c, t in texts.itertuples(index=False)
    )
    return (
        "<html><head><meta charset='utf-8'><style>body{font-family:sans-serif;font-size:12px}"
        "td,th{padding:2px 6px;text-align:left;vertical-align:top}</style></head><body>"
        f"<h3>The paper's claims on this run: {html.escape(summary_line(claims))}</h3>"
        f"{_grid(claims)}<h4>Every row (per-seed values; docs/claims.md)</h4>{rows.to_html()}"
        f"<h4>What each claim tests (the paper's words)</h4><ul>{quotes}</ul></body></html>"
    )


def claims_markdown(claims: pd.DataFrame) -> str:
    """The testable rows as a Markdown table (a gallery or a paper's appendix): claim,
    place, the seeds' median and range, seeds passing, threshold, verdict (bold when
    decided) and why a row is inconclusive; the not-testable rows are counted below it."""
    head = (
        "| claim | variant | scaling | median (min .. max over seeds) | passing | threshold "
        "| verdict | why inconclusive |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    testable = claims[claims["verdict"] != NOT_TESTABLE]
    for r in testable.itertuples():
        decided = r.verdict in (SUPPORTED, NOT_SUPPORTED)
        verdict = f"**{r.verdict.replace('_', ' ')}**" if decided else r.verdict
        span = f"{_number(r.value)} ({_number(r.ci_low)} .. {_number(r.ci_high)})"
        reason = str(r.inconclusive_reason or "").replace("|", "/")
        lines.append(
            f"| {r.claim} | {r.variant} | {r.scaling} | {span} | {r.seeds_passing} of "
            f"{r.n_seeds} | {_number(r.threshold)} | {verdict} | {reason} |"
        )
    lines.append(
        f"\n{len(claims) - len(testable)} rows not testable on this run (a variant, "
        f"scaling or table it lacks); {summary_line(claims)}."
    )
    return "\n".join(lines)


def claims_figure(claims: pd.DataFrame):
    """One panel per claim: every testable row's per-seed values (dots), their range
    (line) and the value where its comparator flips (black tick: the threshold, or minus
    it for ``>= -t`` and ``< -t``, both for ``abs>``), coloured by verdict.

    Args:
        claims: :func:`goldilocks.claims.evaluate_claims` rows.

    Returns:
        A matplotlib ``Figure`` (no backend chosen here).
    """
    from matplotlib.figure import Figure

    from goldilocks.claims import SPEC

    testable = claims[claims["verdict"] != NOT_TESTABLE]
    ids = list(dict.fromkeys(claims["claim"]))
    cols = 3
    nrows = max(1, math.ceil(len(ids) / cols))
    heights = [max(1, int((testable["claim"] == c).sum())) for c in ids]  # rows per panel
    per_row = [max(heights[i : i + cols]) for i in range(0, len(ids), cols)] or [1]
    fig = Figure(figsize=(15, 0.9 + 0.22 * sum(per_row) + 0.55 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False, gridspec_kw={"height_ratios": per_row})
    for ax, claim in zip(axes.flat, ids, strict=False):
        rows = testable[testable["claim"] == claim].reset_index(drop=True)
        sign = SPEC[claim].threshold_sign if claim in SPEC else 1.0
        two_sided = claim in SPEC and SPEC[claim].comparator == "abs>"
        ax.set_title(claim, fontsize=8)
        ax.tick_params(labelsize=6)
        if rows.empty:
            ax.text(0.5, 0.5, "not testable", ha="center", va="center", fontsize=7)
            ax.set_yticks([])
            continue
        for y, r in rows.iterrows():
            colour = MARKER_COLOURS[r["verdict"]]
            values = np.asarray(r["value_per_seed"], float)
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=colour, lw=1.5)
            ax.scatter(values, np.full(len(values), y), s=9, color=colour, zorder=3)
            for tick in (-1, 1) if two_sided else (sign,):
                ax.plot([tick * r["threshold"]] * 2, [y - 0.35, y + 0.35], color="k", lw=1)
        labels = [f"{r.variant}/{r.scaling}" for r in rows.itertuples()]
        ax.set_yticks(range(len(rows)), labels)
        ax.set_ylim(len(rows) - 0.5, -0.5)
    for ax in list(axes.flat)[len(ids) :]:
        ax.set_visible(False)
    fig.suptitle(
        "The paper's claims on this run: per-seed values (dots), their range (line) and the "
        "threshold (black tick); green supported, red not supported, amber inconclusive",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return fig
