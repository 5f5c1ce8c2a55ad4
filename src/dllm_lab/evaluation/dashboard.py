"""Study dashboards: the runs of a study, pulled from any MLflow server, as tables with 95% intervals and one
self-contained interactive HTML page (plotly), logged beside the runs so the MLflow UI shows it inline.

A study is a selection of finished runs: an experiment, the children of a parent run (a sweep), a filter on
tags (``tags.study = 'rl'``), or several of these at once. Each run becomes a *setting* (runs that differ only
in their seed are one setting, their seeds pooled) measured on *sets*: ``<task>`` for the run's own decoder,
``eval_<name>/<task>`` for a further decoder of its final evaluation. Against a baseline setting, on the same
problems, every other setting gets the change in accuracy with a 95% interval: a paired bootstrap over
problems for one seed, a bootstrap over seeds then problems for several (:mod:`dllm_lab.evaluation.stats`).

The page draws accuracy against NFE for every setting and set, coloured by decoder preset; final-step accuracy,
temporal voting (TCV) and EverPass per task when the runs logged temporal signals; and each setting's change
from the baseline, which for a training study is its before -> after.

    page = build_dashboard("http://mlflow:5000", experiments=["dllm-lab/rl_countdown", "dllm-lab/rl_base"])
    page.write("experiments/rl")              # dashboard.html + the PNG versions
"""

from __future__ import annotations

import html
import logging
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dllm_lab.evaluation.palette import preset_colors
from dllm_lab.evaluation.stats import Interval, paired_bootstrap, seed_problem_bootstrap

log = logging.getLogger(__name__)

DASHBOARD_TAG = "dllm.dashboard"  # runs that only hold a dashboard; never part of a study
DASHBOARD_FILE = "dashboard.html"
_SEED = re.compile(r"\s*\bseed=\d+")
_METRIC = re.compile(r"^(eval(?:_[^/]+)?)/(.+)/accuracy$")
TEMPORAL_KEYS = {"tcv_exp_accuracy": "TCV exp", "tcv_linear_accuracy": "TCV linear",
                 "tcv_fixed_accuracy": "TCV fixed", "everpass": "EverPass"}


class NoRunsMatched(LookupError):
    """The selection matched no finished run; the message names what was searched."""


@dataclass
class StudyRun:
    """One finished run as the dashboard reads it."""

    run_id: str
    name: str
    setting: str
    seed: int | None
    experiment: str
    decoder: str            # the decoder preset of the run's own sets
    gen_length: int | None
    trained: bool           # a training run (it logged train/* metrics)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # set -> accuracy, nfe, tcv_*, ...
    correct: dict[str, dict[int, float]] = field(default_factory=dict)  # set -> sample_id -> 0/1

    def decoder_of(self, set_name: str) -> str:
        """``eval_few_step/countdown`` was decoded by ``few_step``; the run's own sets by its preset."""
        prefix = set_name.split("/", 1)[0]
        return prefix.removeprefix("eval_") if "/" in set_name and prefix.startswith("eval_") else self.decoder


@dataclass
class Dashboard:
    """A study's runs, its rows (one per setting and set) and the page built from them."""

    title: str
    selection: str
    runs: list[StudyRun]
    rows: list[dict[str, Any]]
    baseline: str | None
    notes: list[str] = field(default_factory=list)
    extra_tables: dict[str, str] = field(default_factory=dict)  # title -> Markdown (e.g. a sweep's temporal table)

    # ---------------------------------------------------------------------------------------------- figures
    def figures(self) -> dict[str, Any]:
        """The plotly figures of the page, by section title."""
        out = {}
        if any(r.get("nfe") is not None for r in self.rows):  # runs from a study ledger carry accuracy only
            out["Accuracy against NFE, coloured by decoder preset"] = accuracy_nfe_plotly(self.rows, self.title)
        if any("tcv_exp_accuracy" in r or "everpass" in r for r in self.rows):
            out["Final answer, temporal voting and EverPass per task"] = temporal_plotly(self.rows, self.title)
        if self.baseline and any("delta" in r for r in self.rows):
            what = "before -> after" if any(r["trained"] for r in self.rows) else "change"
            out[f"{what.capitalize()} against {self.baseline}, same problems (95% CI)"] = \
                change_plotly(self.rows, self.baseline, self.title)
        return out

    def table(self) -> str:
        return rows_markdown(self.rows, self.baseline)

    def html(self) -> str:
        """One self-contained page: plotly's script inline once, every figure, every table."""
        figures = self.figures()
        parts = [f"<h1>{html.escape(self.title)}</h1>",
                 f"<p class=meta>{html.escape(self.selection)}; {len(self.runs)} runs, "
                 f"{len({r.setting for r in self.runs})} settings"
                 + (f"; baseline <b>{html.escape(self.baseline)}</b>" if self.baseline else "") + "</p>"]
        parts += [f"<p class=note>{html.escape(n)}</p>" for n in self.notes]
        for i, (title, fig) in enumerate(figures.items()):
            parts.append(f"<h2>{html.escape(title)}</h2>")
            parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False,
                                     config={"displaylogo": False, "responsive": True}))
        parts.append("<h2>Results (95% interval against the baseline on the same problems)</h2>")
        parts.append(markdown_table_html(self.table()))
        for title, text in self.extra_tables.items():
            parts.append(f"<h2>{html.escape(title)}</h2>")
            parts.append(markdown_table_html(text))
        parts.append("<h2>Runs</h2>")
        parts.append(markdown_table_html(runs_markdown(self.runs)))
        style = ("body{font-family:system-ui,sans-serif;max-width:1180px;margin:16px auto;padding:0 12px;color:#222}"
                 "table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;"
                 "padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}"
                 ".meta,.note{color:#555;font-size:13px}h1{font-size:22px;overflow-wrap:anywhere}"
                 "h2{font-size:17px;margin-top:26px}")
        return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(self.title)}</title>"
                f"<style>{style}</style></head><body id=dllm-dashboard>{''.join(parts)}</body></html>")

    def write(self, out_dir: str | Path, png: bool = True) -> list[Path]:
        """``dashboard.html``, ``dashboard.md`` and (``png``) the PNG versions into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / DASHBOARD_FILE, out / "dashboard.md"]
        written[0].write_text(self.html())
        written[1].write_text(f"# {self.title}\n\n{self.selection}\n\n{self.table()}\n")
        if png:
            written += self.pngs(out)
        return written

    def pngs(self, out: Path) -> list[Path]:
        """The figures as PNGs (matplotlib, the palette of the page)."""
        from dllm_lab.evaluation.figures import plot_accuracy_vs_nfe, plot_differences

        points = [{**r, "decoder": r["setting"] if r["decoder"] == "-" else r["decoder"], "task": r["set"]}
                  for r in self.rows if r.get("nfe") is not None]
        paths = [plot_accuracy_vs_nfe(points, out / "dashboard_accuracy_vs_nfe.png", run=self.title)] if points else []
        deltas = [{**r, "task": r["set"], "delta_low": r["low"], "delta_high": r["high"]}
                  for r in self.rows if "delta" in r]
        if deltas:
            paths.append(plot_differences(deltas, out / "dashboard_vs_baseline.png", label=lambda r: r["setting"],
                                          baseline=self.baseline, study=self.title, color_key=lambda r: r["setting"]))
        return paths

    def log_to(self, tracking_uri: str, run_id: str) -> None:
        """The page as an artifact of ``run_id`` (the MLflow UI renders HTML artifacts inline)."""
        import tempfile

        import mlflow

        client = mlflow.MlflowClient(tracking_uri)
        with tempfile.TemporaryDirectory() as tmp:
            for path in self.write(tmp, png=False):
                client.log_artifact(run_id, str(path))


# -------------------------------------------------------------------------------------------- selecting runs
def select_runs(tracking_uri: str, experiments: Sequence[str] = (), parent: str | None = None,
                filter_string: str | None = None) -> tuple[list[Any], str]:
    """The finished runs that match every criterion given (experiments by name, the children of ``parent``, an
    MLflow ``filter_string``) and a sentence saying what was searched. :class:`NoRunsMatched` when none."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    if not experiments and parent is None and not filter_string:
        raise NoRunsMatched("say which runs: --experiment NAME, --parent RUN_ID or --filter \"tags.study = 'rl'\"")
    ids, missing = [], []
    for name in experiments:
        found = client.get_experiment_by_name(name)
        (ids.append(found.experiment_id) if found else missing.append(name))
    if missing:
        known = sorted(e.name for e in client.search_experiments())
        raise NoRunsMatched(f"no experiment named {', '.join(map(repr, missing))} on {tracking_uri} "
                            f"(it has: {', '.join(known) or 'none'})")
    clauses = ["attributes.status = 'FINISHED'"]
    parent_run = None
    if parent is not None:
        try:
            parent_run = client.get_run(parent)
        except mlflow.exceptions.MlflowException:
            raise NoRunsMatched(f"no run {parent!r} on {tracking_uri}") from None
        clauses.append(f"tags.mlflow.parentRunId = '{parent}'")
        ids = ids or [parent_run.info.experiment_id]
    if filter_string:
        clauses.append(f"({filter_string})" if " or " in filter_string.lower() else filter_string)
    if not ids:
        ids = [e.experiment_id for e in client.search_experiments()]
    query = " and ".join(clauses)
    try:
        runs = client.search_runs(ids, query, order_by=["attributes.start_time ASC"], max_results=5000)
    except mlflow.exceptions.MlflowException as err:
        raise NoRunsMatched(f"MLflow refused the filter {filter_string!r}: {err.message}") from None
    runs = [r for r in runs if r.data.tags.get(DASHBOARD_TAG) != "true"]
    what = ", ".join(filter(None, [
        f"experiments {', '.join(experiments)}" if experiments else None,
        f"children of run {parent}" if parent else None,
        f"filter {filter_string!r}" if filter_string else None]))
    if not runs:
        raise NoRunsMatched(f"no finished run matches {what} on {tracking_uri}")
    if parent_run is not None:
        runs = [parent_run, *runs]
    return runs, what


def _setting(run, parent_id: str | None) -> tuple[str, str, int | None]:
    tags, params = run.data.tags, run.data.params
    decoder = tags.get("preset.decoder") or tags.get("decoder") or "-"
    length = tags.get("gen_length") or params.get("decoder.gen_length")
    gen_length = int(length) if length not in (None, "", "None") else None
    if parent_id and tags.get("mlflow.parentRunId") == parent_id and decoder != "-":
        return f"{decoder} L{gen_length}" if gen_length else decoder, decoder, gen_length
    return _SEED.sub("", run.info.run_name or run.info.run_id).strip(), decoder, gen_length


def study_runs(tracking_uri: str, runs: Iterable[Any], parent_id: str | None = None) -> list[StudyRun]:
    """Each run's settings, per-set metrics and per-problem correctness (its ``predictions/*.jsonl``)."""
    import mlflow

    from dllm_lab.evaluation.study_runs import correct_by_set

    client = mlflow.MlflowClient(tracking_uri)
    names: dict[str, str] = {}
    out = []
    for run in runs:
        metrics: dict[str, dict[str, float]] = {}
        for key in run.data.metrics:
            match = _METRIC.match(key)
            if match:
                prefix, task = match.groups()
                name = task if prefix == "eval" else f"{prefix}/{task}"
                metrics[name] = {k.rsplit("/", 1)[1]: v for k, v in run.data.metrics.items()
                                 if k.startswith(f"{prefix}/{task}/")}
        if not metrics:
            continue  # a parent run without results of its own, or a run that failed before its evaluation
        experiment_id = run.info.experiment_id
        if experiment_id not in names:
            names[experiment_id] = client.get_experiment(experiment_id).name
        setting, decoder, gen_length = _setting(run, parent_id)
        seed = run.data.params.get("seed", run.data.tags.get("seed"))
        out.append(StudyRun(run.info.run_id, run.info.run_name or run.info.run_id, setting,
                            int(seed) if seed not in (None, "") else None, names[experiment_id], decoder, gen_length,
                            any(k.startswith("train/") for k in run.data.metrics), metrics,
                            correct_by_set(client, run)))
    return out


def ledger_runs(found: dict[str, dict[int, dict[str, Any]]], base: str) -> list[StudyRun]:
    """The runs of a training study's committed ledger (``per_problem.json``, :mod:`~dllm_lab.evaluation.study_runs`:
    arm -> seed -> per-set correctness) as :class:`StudyRun` s, for studies whose runs span several stores or
    sittings. ``base`` is the evaluated-only arm (the base model); every other arm is a trained setting."""
    out = []
    for arm, seeds in found.items():
        for seed, entry in sorted(seeds.items()):
            correct = entry["correct"]
            metrics = {name: {"accuracy": sum(ids.values()) / len(ids), "samples": float(len(ids))}
                       for name, ids in correct.items() if ids}
            out.append(StudyRun(entry.get("run_id") or f"{arm}/{seed}", f"{arm} seed={seed}", arm, seed,
                                f"dllm-lab/{arm}", "-", None, arm != base, metrics, correct))
    return out


def _pool(runs: Sequence[StudyRun], ledger: Sequence[StudyRun]) -> list[StudyRun]:
    """The ledger's runs, then the store's: a run in both, or the same (setting, seed), counts once, from the store."""
    found = {r.run_id for r in runs} | {(r.setting, r.seed) for r in runs}
    return [r for r in ledger if r.run_id not in found and (r.setting, r.seed) not in found] + list(runs)


# ---------------------------------------------------------------------------------------------- the rows
def default_baseline(runs: Sequence[StudyRun], parent=None) -> str | None:
    """The sweep's own baseline (its ``sweep.baseline`` param); for a training study the one evaluated-only
    setting (the base model); else none."""
    if parent is not None:
        preset = parent.data.params.get("sweep.baseline")
        if preset and preset != "None":
            hits = [r.setting for r in runs if r.decoder == preset]
            if hits:
                return hits[0]
    if any(r.trained for r in runs):
        base = sorted({r.setting for r in runs if not r.trained})
        if len(base) == 1:
            return base[0]
    return None


def _baseline_for(runs: Sequence[StudyRun], spec: str, gen_length: int | None) -> list[StudyRun]:
    """The runs of the baseline setting ``spec`` (a setting's name or a decoder preset), at the same generation
    length when the study has several."""
    named = [r for r in runs if r.setting == spec]
    if named:
        return named
    by_preset = [r for r in runs if r.decoder == spec]
    same = [r for r in by_preset if r.gen_length == gen_length]
    return same or by_preset[:1]


def study_rows(runs: Sequence[StudyRun], baseline: str | None) -> list[dict[str, Any]]:
    """One row per (setting, set): seeds, accuracy (mean and per seed), NFE, the temporal metrics, and against
    ``baseline`` on the problems both scored: the change with its 95% interval."""
    groups: dict[tuple[str, str], list[StudyRun]] = {}
    for run in runs:
        for name in run.metrics:
            groups.setdefault((run.setting, name), []).append(run)
    rows = []
    for (setting, name), members in groups.items():
        by_seed = {r.seed: r for r in members}  # the newest run of a seed wins (runs come oldest first)
        members = [by_seed[s] for s in sorted(by_seed, key=lambda s: (s is None, s or 0))]
        first = members[0]
        row: dict[str, Any] = {
            "setting": setting, "set": name, "decoder": first.decoder_of(name), "gen_length": first.gen_length,
            "trained": first.trained, "seeds": sorted(s for s in by_seed if s is not None),
            "runs": len(members), "accuracy_per_seed": [m.metrics[name].get("accuracy") for m in members],
        }
        row["accuracy"] = statistics.mean(a for a in row["accuracy_per_seed"] if a is not None)
        for key in ("nfe", "tokens_per_s", "samples", *TEMPORAL_KEYS):
            values = [m.metrics[name][key] for m in members if key in m.metrics[name]]
            if values:
                row[key] = statistics.mean(values)
        if baseline is not None and setting != baseline:
            row.update(_change(members, _baseline_for(runs, baseline, first.gen_length), name))
        rows.append(row)
    rows.sort(key=lambda r: (r["set"], r["setting"] != baseline, r["setting"]))
    return rows


def _change(members: Sequence[StudyRun], base_runs: Sequence[StudyRun], name: str) -> dict[str, Any]:
    base = next((b.correct[name] for b in base_runs if name in b.correct), None)
    scored = [m.correct[name] for m in members if name in m.correct]
    if not base or not scored:
        return {}
    ids = sorted(set(base).intersection(*scored))
    if not ids:
        return {}
    baseline_values = [base[i] for i in ids]
    if len(scored) == 1:
        interval: Interval = paired_bootstrap([scored[0][i] for i in ids], baseline_values)
    else:
        interval = seed_problem_bootstrap([[c[i] for i in ids] for c in scored], baseline_values)
    return {"problems": len(ids), "base_accuracy": sum(baseline_values) / len(ids), "delta": interval.estimate,
            "low": interval.low, "high": interval.high, "resolved": interval.resolved}


# ---------------------------------------------------------------------------------------------- tables
def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def rows_markdown(rows: Sequence[dict[str, Any]], baseline: str | None) -> str:
    change = "before -> after" if any(r["trained"] for r in rows) else "change"
    head = ["setting", "set", "decoder", "seeds", "accuracy", "NFE", "TCV exp", "EverPass", "problems",
            f"{change} vs {baseline or '(no baseline)'} [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---|" + "---:|" * (len(head) - 3)]
    for r in rows:
        accs = [a for a in r["accuracy_per_seed"] if a is not None]
        acc = (f"{statistics.mean(accs):.3f} ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else _num(r["accuracy"]))
        if "delta" in r:
            cell = Interval(r["delta"], r["low"], r["high"]).cell()
            if r["trained"]:
                cell = f"{r['base_accuracy']:.3f} -> {r['accuracy']:.3f}, {cell}"
        else:
            cell = "baseline" if r["setting"] == baseline else "-"
        lines.append("| " + " | ".join([
            r["setting"], r["set"], r["decoder"], ",".join(map(str, r["seeds"])) or "-", acc, _num(r.get("nfe"), 1),
            _num(r.get("tcv_exp_accuracy")), _num(r.get("everpass")), _num(r.get("problems")), cell]) + " |")
    return "\n".join(lines)


def runs_markdown(runs: Sequence[StudyRun]) -> str:
    lines = ["| run | setting | experiment | seed | run id |", "|---|---|---|---:|---|"]
    lines += [f"| {r.name} | {r.setting} | {r.experiment} | {_num(r.seed)} | {r.run_id} |" for r in runs]
    return "\n".join(lines)


def markdown_table_html(text: str) -> str:
    """A Markdown table (as the reports write them) as HTML, every cell escaped."""
    rows = [line.strip().strip("|").split("|") for line in text.splitlines() if line.strip().startswith("|")]
    rows = [[c.strip() for c in r] for r in rows if not all(set(c.strip()) <= set("-:") for c in r)]
    if not rows:
        return f"<pre>{html.escape(text)}</pre>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------------------------------------- figures
def _colour_key(row: dict[str, Any]) -> str:
    """Decoder studies colour by preset; training studies (one decoder, several arms) by setting."""
    return row["setting"] if row["decoder"] == "-" or row["trained"] else row["decoder"]


def _figure_title(what: str, study: str, width: int = 110) -> dict[str, Any]:
    """What the figure shows, and the study (a run's name can be long) as a subtitle cut to fit the figure."""
    short = study if len(study) <= width else study[:width - 1] + "…"
    return {"text": what, "subtitle": {"text": html.escape(short)}}


def accuracy_nfe_plotly(rows: Sequence[dict[str, Any]], title: str):
    """Accuracy against mean NFE, one point per (setting, set); colour: decoder preset; symbol: set."""
    import plotly.graph_objects as go

    points = [r for r in rows if r.get("nfe") is not None]
    keys = sorted({_colour_key(r) for r in points})
    colours = preset_colors(keys)
    sets = sorted({r["set"] for r in points})
    symbols = dict(zip(sets, ["circle", "square", "diamond", "triangle-up", "x", "star", "cross", "hexagon"] * 4,
                       strict=False))
    fig = go.Figure()
    for key in keys:
        mine = [r for r in points if _colour_key(r) == key]
        fig.add_trace(go.Scatter(
            x=[r["nfe"] for r in mine], y=[r["accuracy"] for r in mine], mode="markers", name=key,
            marker={"color": colours[key], "size": 11, "symbol": [symbols[r["set"]] for r in mine],
                    "line": {"width": 1, "color": "#333"}},
            customdata=[[r["setting"], r["set"], ",".join(map(str, r["seeds"])) or "-"] for r in mine],
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>NFE %{x:.1f}<br>accuracy %{y:.3f}"
                          "<br>seeds %{customdata[2]}<extra></extra>"))
    for name in sets:  # a legend entry per set, for the symbols
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"set: {name}", legendgroup="sets",
                                 marker={"symbol": symbols[name], "color": "#888", "size": 10}))
    fig.update_layout(title=_figure_title("Accuracy vs NFE", title), xaxis_title="mean NFE per problem (log scale)",
                      yaxis_title="accuracy", xaxis_type="log", template="plotly_white", height=480,
                      legend={"title": "decoder preset / setting"})
    return fig


def temporal_plotly(rows: Sequence[dict[str, Any]], title: str):
    """Per task: final-step accuracy, TCV (exp) and EverPass of each setting, as grouped bars."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    temporal = [r for r in rows if "tcv_exp_accuracy" in r or "everpass" in r]
    sets = sorted({r["set"] for r in temporal})
    fig = make_subplots(rows=1, cols=len(sets), subplot_titles=sets, shared_yaxes=True)
    measures = [("accuracy", "final answer", "#4d4d4d"), ("tcv_exp_accuracy", "TCV exp", "#1f77b4"),
                ("everpass", "EverPass", "#2ca02c")]
    for col, name in enumerate(sets, start=1):
        mine = [r for r in temporal if r["set"] == name]
        for key, label, colour in measures:
            fig.add_trace(go.Bar(x=[r["setting"] for r in mine], y=[r.get(key) for r in mine], name=label,
                                 marker_color=colour, legendgroup=label, showlegend=col == 1,
                                 hovertemplate=f"%{{x}}<br>{label} %{{y:.3f}}<extra></extra>"), row=1, col=col)
    fig.update_layout(title=_figure_title("Final answer vs temporal voting vs EverPass", title), barmode="group",
                      template="plotly_white", height=420, yaxis_title="accuracy")
    return fig


def change_plotly(rows: Sequence[dict[str, Any]], baseline: str, title: str):
    """Each setting's change from the baseline with its 95% interval, one panel per set; open markers: not
    resolved (the interval covers 0)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    deltas = [r for r in rows if "delta" in r]
    sets = sorted({r["set"] for r in deltas})
    colours = preset_colors(sorted({_colour_key(r) for r in deltas}))
    fig = make_subplots(rows=1, cols=len(sets), subplot_titles=sets, shared_yaxes=True)
    shown: set[str] = set()
    for col, name in enumerate(sets, start=1):
        for r in (r for r in deltas if r["set"] == name):
            key = _colour_key(r)
            fig.add_trace(go.Scatter(
                x=[r["delta"]], y=[r["setting"]], mode="markers", name=key, legendgroup=key,
                showlegend=key not in shown,
                error_x={"type": "data", "symmetric": False, "array": [r["high"] - r["delta"]],
                         "arrayminus": [r["delta"] - r["low"]], "color": colours[key]},
                marker={"color": colours[key], "size": 10, "symbol": "circle" if r["resolved"] else "circle-open"},
                hovertemplate=(f"{html.escape(r['setting'])} on {html.escape(name)}<br>{r['base_accuracy']:.3f} -> "
                               f"{r['accuracy']:.3f}<br>change %{{x:+.3f}} [{r['low']:+.3f}, {r['high']:+.3f}]"
                               f"{'' if r['resolved'] else ' (not resolved)'}<br>{r['problems']} problems"
                               "<extra></extra>")), row=1, col=col)
            shown.add(key)
        fig.add_vline(x=0, line_color="#999", line_dash="dot", row=1, col=col)
    fig.update_layout(title=_figure_title(f"Change against {baseline} (filled: the 95% interval excludes 0)", title),
                      template="plotly_white", height=max(320, 60 + 28 * len({r['setting'] for r in deltas})),
                      xaxis_title="accuracy difference")
    return fig


# ---------------------------------------------------------------------------------------------- entry
def build_dashboard(tracking_uri: str, experiments: Sequence[str] = (), parent: str | None = None,
                    filter_string: str | None = None, baseline: str | None = None,
                    title: str | None = None, ledger: Sequence[StudyRun] = ()) -> Dashboard:
    """Select the runs (:func:`select_runs`), read them and build the study's rows against ``baseline`` (a
    setting's name or a decoder preset; default :func:`default_baseline`). ``ledger``: runs of the study kept
    outside this store (:func:`ledger_runs`), pooled with the selected ones; with a ledger, a selection that
    matches nothing in the store is no error."""
    import mlflow

    try:
        found, what = select_runs(tracking_uri, experiments, parent, filter_string)
    except NoRunsMatched:
        if not ledger or parent is not None:
            raise
        found, what = [], f"filter {filter_string!r}" if filter_string else "the ledger"
    parent_run = found[0] if parent is not None else None
    runs = _pool(study_runs(tracking_uri, found, parent), ledger)
    if ledger:
        what += f" (with {len(ledger)} runs of the study's ledger)"
    if not runs:
        raise NoRunsMatched(f"the runs matching {what} logged no eval/<task>/accuracy: nothing to compare")
    settings = {r.setting for r in runs}
    notes = []
    if baseline is not None and baseline not in settings and baseline not in {r.decoder for r in runs}:
        raise NoRunsMatched(f"baseline {baseline!r} is none of the settings ({', '.join(sorted(settings))}) nor "
                            "their decoder presets")
    baseline = baseline or default_baseline(runs, parent_run)
    if baseline is None and len(settings) > 1:
        notes.append("No baseline: pass --baseline <setting> for changes with intervals.")
    extra = {}
    if parent_run is not None:
        client = mlflow.MlflowClient(tracking_uri)
        import tempfile

        names = {a.path for a in client.list_artifacts(parent_run.info.run_id)}
        if "temporal_table.md" in names:
            with tempfile.TemporaryDirectory() as tmp:
                text = Path(client.download_artifacts(parent_run.info.run_id, "temporal_table.md", tmp)).read_text()
            extra["Temporal signals with intervals (the sweep's own table)"] = text
    name = title or (parent_run.info.run_name if parent_run is not None else None) or \
        (experiments[0].removeprefix("dllm-lab/") if len(experiments) == 1 else None) or "study"
    return Dashboard(name, what, runs, study_rows(runs, baseline), baseline, notes, extra)


def dashboard_run(tracking_uri: str, experiment: str, title: str, tags: dict[str, str] | None = None) -> str:
    """The run of ``experiment`` that holds a study's dashboard (tagged :data:`DASHBOARD_TAG`, so no study
    counts it), made on first use; its id."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    kept = client.search_runs([experiment_id], f"tags.`{DASHBOARD_TAG}` = 'true' and "
                              f"attributes.run_name = 'dashboard: {title}'", max_results=1)
    if kept:  # one dashboard run per study: a rebuilt page replaces the old one
        return kept[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"dashboard: {title}",
                            tags={DASHBOARD_TAG: "true", **(tags or {})})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def study_dashboard(tracking_uri: str, out_dir: str | Path | None, title: str, *, parent: str | None = None,
                    filter_string: str | None = None, baseline: str | None = None,
                    home: str | None = None, ledger: Sequence[StudyRun] = ()) -> Dashboard | None:
    """The dashboard a sweep or a study report writes at its end: ``dashboard.html`` into ``out_dir`` (the PNGs
    are the study's own) and logged beside the runs (the parent run, else the study's dashboard run). A
    dashboard that cannot be built is a warning, never a lost study: its tables and PNGs are already written.
    ``home``: the experiment of the dashboard run when there is no parent (default the first run's); ``ledger``:
    the study's runs kept outside the store (:func:`ledger_runs`)."""
    try:
        page = build_dashboard(tracking_uri, (), parent, filter_string, baseline, title, ledger)
        if out_dir is not None:
            page.write(out_dir, png=False)
        target = parent or dashboard_run(tracking_uri, home or page.runs[0].experiment, title, {"study": title})
        page.log_to(tracking_uri, target)
    except Exception as err:  # noqa: BLE001 - reported, and the study's own outputs stand
        log.warning("the %s dashboard was not built (%s: %s); rebuild it with `dllm-report`", title,
                    type(err).__name__, err)
        return None
    log.info("dashboard: %s logged to run %s", title, target)
    return page
