"""The runs behind the experiments: one trained, evaluated model per (model, settings, seed)."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import cached_property
from typing import Any, Iterable, Sequence

from dpr_dist.config import Config
from dpr_dist.data import io
from dpr_dist.eval.evaluate import evaluate_models
from dpr_dist.eval.experiment_options import tag
from dpr_dist.eval.experiment_store import Reuse, config_fingerprint, data_fingerprint
from dpr_dist.train.modeldir import ModelBundle, load_model_dir, update_metrics
from dpr_dist.train.prepared import read_records
from dpr_dist.train.parallel import RunRequest, train_runs
from dpr_dist.train.run import default_model_dir, pretrain, pretrained_checkpoint, train

log = logging.getLogger(__name__)

#: Settings an experiment varies, with the short tag of run names.
SETTINGS = {"data.threshold": "t", "train.negative_ratio": "neg", "model.gnn_layers": "l"}


def _get(cfg: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)



class Runs:
    """Trains (or finds) and evaluates the runs of the experiments, once each.

    Args:
        cfg: The configuration, ``train.storage_path`` already under the output directory.
        report: Where ``results.json`` goes (rows already there stay, unless evaluated again).
        mbr: With a temperature, every candidate-picking run also reports the pick of
            highest expected F1 (:mod:`dpr_dist.eval.mbr`) as the row's ``"mbr"`` metrics.
        reuse: Earlier ``results.json`` files whose rows stand for runs that have no model
            directory, where the fingerprints match (:mod:`dpr_dist.eval.experiment_store`).
    """

    def __init__(self, cfg: Config, report: str, mbr: float | None = None, reuse: Sequence[str] = ()) -> None:
        self.cfg, self.report, self.mbr = cfg, report, mbr
        self.test = read_records(cfg.data.prepared, "test")
        path = io.join(report, "results.json")
        #: Rows an earlier call wrote to ``results.json`` (kept there beside this call's rows).
        self._earlier = {(r["model"], r["run"]): r for r in (io.read_json(path) if io.exists(path) else [])}
        self.reuse = Reuse(reuse, cfg.data.prepared, mbr) if reuse else None
        self.rows: dict[tuple[str, str], dict] = {}
        self._pretrained: dict[int, str] = {}
        #: Runs trained by this object, ``{name}-{model}``: by :meth:`train_planned`, then
        #: (``unplanned``) by :meth:`run` for a run the plan did not name.
        self.trained: list[str] = []
        self.unplanned: list[str] = []
        #: Runs whose rows came from the ``reuse`` files, ``{name}-{model}``.
        self.reused: list[str] = []

    @cached_property
    def data_fp(self) -> str:
        """The prepared data's fingerprint, computed when a row first needs it (it reads every
        split's ids and packages)."""
        return self.reuse.data_fp if self.reuse else data_fingerprint(self.cfg.data.prepared)

    def seed_config(self, seed: int) -> Config:
        """The base configuration of ``seed``: ``train.seed = seed`` and ``train.name`` unchanged for
        the configuration's own ``train.seed`` (so ``dpr train`` / ``dpr pipeline`` runs are
        reused), else ``{name}-s{seed}``."""
        tc = self.cfg.train
        name = tc.name if int(seed) == tc.seed else f"{tc.name}-s{seed}"
        return replace(self.cfg, train=replace(tc, seed=int(seed), name=name))

    def pretrained(self, seed: int) -> str:
        """The NCF checkpoint of ``seed`` (pre-trained once, then found by name)."""
        if seed not in self._pretrained:
            cfg = self.seed_config(seed)
            record = pretrained_checkpoint(cfg)
            self._pretrained[seed] = record["checkpoint"] if record else pretrain(cfg)
        return self._pretrained[seed]

    def config(self, seed: int, settings: dict[str, Any]) -> Config:
        """The configuration of a run: the seed's, with ``settings`` and a name tagged by them."""
        cfg = self.seed_config(seed)
        diff = {k: v for k, v in settings.items() if _get(cfg, k) != v}
        name = cfg.train.name + "".join(f"-{SETTINGS[k]}{tag(v)}" for k, v in sorted(diff.items()))
        cfg = cfg.with_overrides([f"{k}={v}" for k, v in diff.items()])
        return replace(cfg, train=replace(cfg.train, name=name))

    def _missing(self, model: str, cfg: Config) -> bool:
        return not io.exists(io.join(default_model_dir(cfg, model), "bundle.json"))

    def _reusable(self, model: str, cfg: Config) -> dict | None:
        """The earlier row that stands for a run with no model directory (None: train it)."""
        return self.reuse.get(model, cfg) if self.reuse is not None and self._missing(model, cfg) else None

    def train_planned(self, planned: Iterable[tuple[str, int, dict[str, Any]]]) -> None:
        """Train every run of ``planned`` (``(model, seed, settings)``) that has no model
        directory yet, ``train.parallel_runs`` at once (:mod:`dpr_dist.train.parallel`):
        first the NCF pre-training of each seed that lacks one, then the other runs. Every
        planned run is evaluated (:meth:`run`, ``results.json``): the finished ones first,
        each trained one as soon as it has finished. The runs trained are appended to
        :attr:`trained`.
        """
        todo: dict[tuple[str, str], tuple[RunRequest, dict | None]] = {}
        for model, seed, settings in planned:
            cfg = self.seed_config(seed) if model == "ncf" else self.config(seed, settings)
            if (model, cfg.train.name) in todo:
                continue
            if self._missing(model, cfg) and self._reusable(model, cfg) is None:
                todo[(model, cfg.train.name)] = (RunRequest(cfg, model), settings)
            else:
                self.run(model, seed, **settings)  # stored metrics, or evaluated now
        seeds = sorted({r.cfg.train.seed for r, _ in todo.values()})
        first = [todo.pop(("ncf", self.seed_config(s).train.name), None) or (RunRequest(self.seed_config(s), "ncf"),
                                                                             None)  # only to pre-train
                 for s in seeds if pretrained_checkpoint(self.seed_config(s)) is None]
        self._train(first)  # each seed's pre-training (and NCF model directory)
        self._train([(RunRequest(r.cfg, r.model, self.pretrained(r.cfg.train.seed)), settings)
                     for r, settings in todo.values()])

    def _train(self, batch: list[tuple[RunRequest, dict | None]]) -> None:
        def evaluate(i: int, _: str) -> None:
            request, settings = batch[i]
            self.trained.append(request.label)
            if settings is not None:
                self.run(request.model, request.cfg.train.seed, **settings)

        train_runs([r for r, _ in batch], self.cfg.train.parallel_runs, on_done=evaluate)

    def run(self, model: str, seed: int, **settings: Any) -> dict[str, Any]:
        """Test metrics of ``model`` at ``seed`` and ``settings`` (``{"data.threshold": 0.05}``).

        Test metrics are computed once and stored in the model directory's metrics
        (``test``, and ``test_mbr`` for the expected-F1 pick at the temperature asked).

        Returns:
            ``{"model", "seed", "run", "settings", "model_dir", "best_val_f1"}`` plus the
            test metrics of :func:`dpr_dist.eval.metrics.summarize`; with ``mbr`` and a
            candidate-picking model, also ``"mbr"``: the expected-F1 pick's test metrics.
        """
        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise ValueError(f"unknown experiment setting(s) {sorted(unknown)}; expected {sorted(SETTINGS)}")
        cfg = self.config(seed, settings)
        key = (model, cfg.train.name)
        if key in self.rows:
            return self.rows[key]
        reused = self._reusable(model, cfg)
        if reused is not None:
            self.reused.append(f"{cfg.train.name}-{model}")
            return self._keep(key, reused)
        path = default_model_dir(cfg, model)
        if self._missing(model, cfg):
            log.info("experiment run %s-%s", cfg.train.name, model)
            self.trained.append(f"{cfg.train.name}-{model}")
            self.unplanned.append(self.trained[-1])
            if model == "ncf":
                train(self.seed_config(seed), "ncf")
            else:
                train(cfg, model, pretrained=self.pretrained(seed))
        bundle = load_model_dir(path)
        n = self.test.num_rows
        stored = {k: bundle.metrics.get(k) for k in ("test", "test_mbr")}
        want_mbr = self.mbr is not None and bundle.model is not None  # NCF ranks drugs: nothing to pick
        stale = {"test": stored["test"] is None or stored["test"].get("n") != n,
                 "test_mbr": want_mbr and (stored["test_mbr"] is None or stored["test_mbr"].get("n") != n
                                           or stored["test_mbr"].get("mbr_temperature") != self.mbr)}
        if any(stale.values()):
            res = evaluate_models(bundle, self.test, [model], mbr_temperature=self.mbr if want_mbr else None)[0]
            fresh = {"test": res[model], "test_mbr": res.get(f"{model}+mbr")}
            stored.update({k: fresh[k] for k, s in stale.items() if s})
            update_metrics(path, {k: stored[k] for k, s in stale.items() if s})
        row = {"model": model, "seed": int(seed), "run": cfg.train.name,
               "settings": {k: _get(cfg, k) for k in SETTINGS}, "model_dir": path,
               "best_val_f1": bundle.metrics.get("best_val_f1"), **stored["test"]}
        if want_mbr:
            row["mbr"] = stored["test_mbr"]
        row.update(data_fingerprint=self.data_fp, config_fingerprint=config_fingerprint(cfg),
                   trained_at=bundle.info.get("created"))
        return self._keep(key, row)

    def _keep(self, key: tuple[str, str], row: dict) -> dict:
        """Add ``row`` to :attr:`rows` and write ``results.json``: this call's rows and those
        of earlier calls in the same output directory (a call with fewer seeds or sections
        drops none)."""
        self.rows[key] = row
        io.write_json(list({**self._earlier, **self.rows}.values()), io.join(self.report, "results.json"))
        return row

    def bundle(self, model: str, seed: int) -> ModelBundle:
        """The model directory of ``model`` at ``seed`` and the default settings (trained if needed).

        Raises:
            FileNotFoundError: when the run's row was reused and its model directory is not here.
        """
        row = self.run(model, seed)
        if "reused_from" in row and not io.exists(io.join(row["model_dir"], "bundle.json")):
            raise FileNotFoundError(f"run {row['run']}-{model} was reused from {row['reused_from']}, but this "
                                    f"section needs its model directory ({row['model_dir']} is not here)")
        return load_model_dir(row["model_dir"])

