"""The one module that reads Hydra configs: it turns a composed ``DictConfig`` into typed objects.

``build_job(cfg, stage)`` validates the whole config before anything is built (every error names the
override that fixes it) and returns a :class:`Job`: the typed settings of each concern, owned by its
package (``DecodeConfig``, ``TemporalSettings``, ``GRPOSettings``, ``OptimSettings``, ``TrainerSettings``,
``SweepSettings``), the user's instantiated callbacks, and builders for the model, data and logger.
The run bodies (:mod:`dllm_lab.runs`) and the sweeps only see these objects; nothing below reads a config.

Where the thing is a class a user may swap, the config names it with ``_target_`` and Hydra's
``instantiate`` builds it: trainer callbacks (``callbacks.*``), the logger (``logger``) and decoding
callbacks (``decode_callbacks.*``). ``imports=[my_pkg.rewards]`` imports modules first, so that rewards
they register (``dllm_lab.rl.register_reward``) can be named in ``algo.rewards``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from dllm_lab.data import TaskDataModule
from dllm_lab.data.collate import SFTCollator
from dllm_lab.decoding import DecodeCallback, DecodeConfig
from dllm_lab.decoding.cache import check_cache
from dllm_lab.errors import ConfigError
from dllm_lab.evaluation.sweep import SweepSetting, SweepSettings
from dllm_lab.extensions import import_extensions
from dllm_lab.models import DiffusionLM, build_tiny_model, build_tokenizer, load_model
from dllm_lab.models.tiny import task_corpus
from dllm_lab.paths import config_dir, project_root
from dllm_lab.rl import GRPOSettings
from dllm_lab.rl.posterior import PosteriorSettings
from dllm_lab.tasks import TASKS, task_name_of
from dllm_lab.tasks.base import PROMPT_STYLES
from dllm_lab.temporal import TemporalSettings
from dllm_lab.tracking import check_access, check_server, flatten, log_config, set_experiment_description
from dllm_lab.tracking.identity import RunIdentity, experiment_description, run_identity, run_params
from dllm_lab.training.optim import OptimSettings
from dllm_lab.training.trainer import TrainerSettings

log = logging.getLogger(__name__)

ALGO_KINDS = ("sft", "grpo", "posterior_sft")
MLFLOW_FACTORY = "dllm_lab.tracking.make_mlflow_logger"


@dataclass
class Job:
    """A validated run: typed settings plus what is needed to build the model, data and logger.

    stage: ``train`` or ``eval``. config / config_yaml: the resolved config as plain containers and as
    YAML (logged as params and ``config.yaml``, saved in checkpoints and exports). algo_kind: ``sft`` or
    ``grpo`` (``algo.kind``; train only). temporal: always built (the TCR reward reads it);
    eval_temporal: the same, or ``None`` when ``temporal.enabled=false``.
    """

    stage: str
    seed: int
    task_name: str
    output_dir: Path
    config: dict[str, Any]
    config_yaml: str
    decoder: DecodeConfig
    temporal: TemporalSettings
    eval_temporal: TemporalSettings | None
    trainer: TrainerSettings
    algo_kind: str | None = None
    optim: OptimSettings | None = None
    grpo: GRPOSettings | None = None
    posterior: PosteriorSettings | None = None
    sampler: DecodeConfig | None = None  # posterior SFT's trace decoder
    sweep: SweepSettings | None = None
    ckpt_path: str | None = None
    export_dir: str | None = None
    eval_after_fit: bool = False
    validate_before_fit: bool = False
    eval_before_fit: bool = False
    print_table: bool = True
    tracking_uri: str | None = None
    experiment_name: str | None = None
    decode_callbacks: list[DecodeCallback] = field(default_factory=list)
    eval_decoders: dict[str, DecodeConfig] = field(default_factory=dict)  # further decoders of the final evaluation
    trainer_callbacks: list[Any] = field(default_factory=list)
    train_examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # local train sources, read once
    identity: RunIdentity | None = None  # the run's default name and tags (from Hydra's choices and overrides)
    description: str | None = None  # the MLflow experiment's description (its config file's header comment)
    _logger_cfg: Any = None

    def make_logger(self, run_name: str | None = None, tags: dict[str, Any] | None = None,
                    run_id: str | None = None, log_run_config: bool = False):
        """The run's logger (``None`` with ``logger=none``). The default target is MLflow: named by what the
        command line changed, tagged with the presets, overrides, git state, model, strategy and devices;
        ``log_run_config`` logs the settings this stage reads as params, and the whole config as ``config.yaml``."""
        node = self._logger_cfg
        if node is None or not node.get("_target_"):
            return None
        if node._target_ != MLFLOW_FACTORY:  # another logger class: built as configured
            logger = instantiate(node)
            if log_run_config and run_id is None:
                logger.log_hyperparams(flatten(self.config))
            return logger
        cfg = self.config
        identity = self.identity or run_identity(cfg, {}, [], project_root())
        all_tags = {
            **identity.tags,
            "task_name": self.task_name,
            "model": cfg["model"].get("name_or_path") or "tiny_scratch",
            "model_family": cfg["model"].get("family") or "auto",
            "strategy": self.trainer.strategy,
            "devices": self.trainer.devices,
            "accelerator": self.trainer.accelerator,
            **(cfg.get("tags") or {}),
            **(tags or {}),
        }
        logger = instantiate(node, run_name=run_name or cfg.get("run_name") or identity.name, root=project_root(),
                             tags=all_tags, run_id=run_id, output_dir=str(self.output_dir))
        if log_run_config and run_id is None:
            from lightning.pytorch.utilities import rank_zero_only

            if rank_zero_only.rank == 0:
                log_config(logger, run_params(cfg, self.stage), self.config_yaml)
                if self.description:
                    set_experiment_description(logger, self.description)
        return logger


# -- building ---------------------------------------------------------------------------------------------
def hydra_runtime() -> tuple[dict[str, str], list[str]]:
    """Hydra's config-group choices (``decoder: med``) and command-line overrides of this job; empty outside
    a Hydra run (a config composed without its Hydra node)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}, []
    hydra = HydraConfig.get()
    choices = {str(k): str(v) for k, v in hydra.runtime.choices.items()
               if v is not None and not str(k).startswith("hydra")}
    return choices, [str(o) for o in hydra.overrides.task]


def build_job(cfg: DictConfig, stage: str) -> Job:
    """Validate ``cfg`` for ``stage`` (``train`` | ``eval``) and build its typed settings."""
    import_extensions(cfg.get("imports"))  # user extensions register themselves on import
    entry = cfg.get("entry", stage)
    _check(entry == stage, f"this config is for dllm-{entry} (python -m dllm_lab.cli.{entry}), not dllm-{stage}")
    _validate_data(cfg.data)
    trainer = TrainerSettings(**_plain(cfg.trainer))
    temporal_values = _plain(cfg.get("temporal") or {})
    enabled = temporal_values.pop("enabled", True)
    temporal = _settings(TemporalSettings, temporal_values, "temporal")
    choices, overrides = hydra_runtime()
    prefer_chosen_preset(cfg, choices, overrides)  # `experiment=X decoder=med`: med's own settings win over X's
    decoder = DecodeConfig.from_dict(_plain(cfg.decoder), prefix="decoder")
    logger_cfg = cfg.get("logger")
    job = Job(
        stage=stage, seed=int(cfg.seed), task_name=str(cfg.task_name), output_dir=Path(cfg.paths.output_dir),
        config=_plain(cfg), config_yaml=OmegaConf.to_yaml(cfg, resolve=True), decoder=decoder, temporal=temporal,
        eval_temporal=temporal if enabled else None, trainer=trainer, print_table=bool(cfg.get("print_table", True)),
        tracking_uri=logger_cfg.get("tracking_uri") if logger_cfg else None,
        experiment_name=logger_cfg.get("experiment_name") if logger_cfg else None,
        decode_callbacks=[_instantiate(node, f"decode_callbacks.{name}", DecodeCallback)
                          for name, node in (cfg.get("decode_callbacks") or {}).items()],
        _logger_cfg=logger_cfg,
    )
    job.eval_decoders = build_eval_decoders(cfg.get("eval_decoders") or {})
    job.identity = run_identity(job.config, choices, overrides, project_root())
    job.description = experiment_description(choices, str(entry), config_dir())
    if job.tracking_uri and logger_cfg.get("_target_") == MLFLOW_FACTORY:
        from lightning.pytorch.utilities import rank_zero_only

        # an unreachable server, refused credentials or a read-only experiment fail now, before a model is loaded
        if rank_zero_only.rank == 0:
            check_access(job.tracking_uri, str(job.experiment_name), job.description)
        else:
            check_server(job.tracking_uri)
    if stage == "train":
        _train_settings(cfg, job)
        job.train_examples = _check_train_sources(cfg.data, job.algo_kind)
    if cfg.get("sweep"):
        job.sweep = build_sweep(cfg.sweep)
    if job.grpo is not None and job.grpo.needs_answer_likelihood:
        _check(decoder.infill, "algo.rewards: answer_likelihood scores the gold answer in the answer block of the "
                               "infilling template; use an infilling decoder (decoder.infill=true, e.g. "
                               "decoder=infill_early_exit with decoder.early_exit=false)")
        lacking = _without_gold_answers(cfg.data.tasks)
        _check(not lacking, f"algo.rewards: answer_likelihood needs gold answers, and {lacking} has none")
    if decoder.posterior and job.algo_kind == "grpo":
        raise ConfigError("decoder.posterior=true: GRPO rollouts sample without the answer; the posterior decoder "
                          "is for evaluation (dllm-eval decoder=posterior); pick another decoder preset")
    if decoder.posterior:
        lacking = _without_gold_answers(cfg.data.eval_tasks or cfg.data.tasks)
        _check(not lacking, f"decoder.posterior=true conditions on each example's gold answer, and {lacking} has "
                            "none (any valid expression is right); evaluate another task, or drop decoder=posterior")
    return job


def _train_settings(cfg: DictConfig, job: Job) -> None:
    algo = cfg.algo
    kind = algo.get("kind")
    _check(kind in ALGO_KINDS, f"algo.kind={kind!r}: choose one of {ALGO_KINDS} (sft: MDLM SFT, grpo: GRPO family, "
                               "posterior_sft: posterior SFT)")
    job.algo_kind = kind
    job.trainer.check_algo(kind)
    job.optim = OptimSettings(
        lr=float(algo.lr), weight_decay=float(algo.weight_decay), betas=tuple(algo.betas),
        warmup_steps=int(algo.warmup_steps), total_steps=job.trainer.max_steps, min_lr_ratio=float(algo.min_lr_ratio),
        decay_norms_and_biases=kind == "grpo",  # as before: GRPO decays every parameter, SFT exempts norms/biases
    )
    if kind == "grpo":
        names, weights = list(algo.rewards), list(algo.reward_weights)
        _check(len(names) == len(weights),
               f"algo.rewards={names} and algo.reward_weights={weights} need one weight per reward")
        _check(len(set(names)) == len(names), f"algo.rewards={names}: a reward is listed twice")
        job.grpo = GRPOSettings(
            estimator=algo.estimator, rewards=dict(zip(names, map(float, weights), strict=True)),
            tcr_rule=algo.tcr_rule, num_generations=int(algo.num_generations),
            num_iterations=int(algo.num_iterations), temperature=float(algo.temperature), eps=float(algo.eps),
            beta=float(algo.beta), p_mask_prompt=float(algo.p_mask_prompt), advantage_scale=algo.advantage_scale,
            max_grad_norm=None if algo.max_grad_norm is None else float(algo.max_grad_norm),
            sample_table_every=int(algo.sample_table_every), lora=_plain(algo.lora) if algo.get("lora") else None,
            drop_uniform_groups=bool(algo.get("drop_uniform_groups", False)),
        )
    if kind == "posterior_sft":
        fields = PosteriorSettings.__dataclass_fields__
        job.posterior = _settings(PosteriorSettings, {k: _plain(algo[k]) for k in algo if k in fields}, "algo")
        sampler = {**load_decoder_preset(str(algo.sampler_preset)), **_plain(algo.get("sampler") or {})}
        if sampler.get("steps") is None and sampler.get("schedule") == "linear":
            sampler["steps"] = sampler.get("gen_length")  # an adaptive run decoder: one token per pass
        job.sampler = DecodeConfig.from_dict(sampler, prefix="algo.sampler")
        _check(job.sampler.infill and job.sampler.posterior,
               f"algo.sampler_preset={algo.sampler_preset}: posterior SFT samples reasoning given the gold answer; "
               "use an infilling decoder with posterior=true (algo.sampler_preset=posterior)")
        lacking = _without_gold_answers(cfg.data.tasks)
        _check(not lacking, f"algo=posterior_sft conditions on each prompt's gold answer, and {lacking} has none "
                            "(any valid expression is right); train on tasks with gold answers")
    job.ckpt_path = cfg.get("ckpt_path")
    job.export_dir = cfg.get("export_dir")
    job.eval_after_fit = bool(cfg.get("eval_after_fit"))
    job.validate_before_fit = bool(cfg.get("validate_before_fit"))
    before = cfg.get("eval_before_fit")  # null: for RL and posterior SFT (what the training changed), not for SFT
    job.eval_before_fit = job.algo_kind in ("grpo", "posterior_sft") if before is None else bool(before)
    job.trainer_callbacks = [_instantiate(node, f"callbacks.{name}")
                             for name, node in (cfg.get("callbacks") or {}).items() if node is not None]


def build_model(job: Job) -> DiffusionLM:
    """Load ``model.name_or_path``, or build a fresh tiny model when ``model.init`` is set; then refuse a decoder
    of the job that the model cannot run (a KV cache on a model that cannot cache)."""
    lm = _build_model(job)
    decoders = {"decoder": job.decoder, "algo.sampler": job.sampler,
                **{f"eval_decoders.{name}": d for name, d in job.eval_decoders.items()}}
    for where, decoder in decoders.items():
        if decoder is not None:
            check_cache(lm, decoder.cache, where)
    return lm


def _build_model(job: Job) -> DiffusionLM:
    model_cfg, data_cfg = job.config["model"], job.config["data"]
    init = model_cfg.get("init")
    if init:
        style = data_cfg.get("prompt_style") or "compact"
        tokenizer = build_tokenizer(task_corpus(list(data_cfg["tasks"]), init["corpus_examples"], style),
                                    init["vocab_size"])
        model = build_tiny_model(
            tokenizer, hidden_size=init["hidden_size"], num_layers=init["num_layers"], num_heads=init["num_heads"],
            intermediate_size=init["intermediate_size"], max_position_embeddings=init["max_position_embeddings"],
            seed=job.seed, arch=init.get("arch", "modernbert"),
        )
        family = getattr(model.config, "dllm_family", "masked_lm")
        return DiffusionLM(model, tokenizer, family, tokenizer.mask_token_id, (tokenizer.eos_token_id,),
                           prompt_style=style)
    if not model_cfg.get("name_or_path"):
        raise ConfigError("set model.name_or_path=<dir or hub id>, or model=tiny_scratch to build a fresh model")
    path = Path(str(model_cfg["name_or_path"]))
    if "checkpoints" in path.parts and not path.exists():
        raise FileNotFoundError(
            f"model.name_or_path={path} does not exist. The embedded model ships in the repo: check out "
            "checkpoints/ (git lfs is not used), or retrain it with `make train-tiny`."
        )
    return load_model(
        str(path), family=model_cfg.get("family"), trust_remote_code=bool(model_cfg.get("trust_remote_code", False)),
        dtype=model_cfg.get("dtype", "auto"), mask_token_id=model_cfg.get("mask_token_id"),
        eos_token_ids=model_cfg.get("eos_token_ids"), prompt_style=data_cfg.get("prompt_style"),
        revision=model_cfg.get("revision"),
    )


def build_datamodule(job: Job, lm: DiffusionLM) -> TaskDataModule:
    """The task DataModule in the model's prompt style (``data.prompt_style`` overrides it); RL runs stream
    prompt batches for rollouts instead of noised SFT batches."""
    kwargs = dict(job.config["data"])
    kwargs["prompt_style"] = kwargs.get("prompt_style") or lm.prompt_style
    train_mode = "prompts" if job.algo_kind in ("grpo", "posterior_sft") else "sft"
    return TaskDataModule(chat=lm.chat, mask_token_id=lm.mask_token_id, seed=job.seed, train_mode=train_mode,
                          train_examples=job.train_examples, **kwargs)


def resolve_prompt_style(job: Job, lm: DiffusionLM) -> None:
    """Write the prompt style the run uses into its config, so that exports and checkpoints describe it."""
    style = job.config["data"].get("prompt_style") or lm.prompt_style
    if job.config["data"].get("prompt_style") != style:
        job.config["data"]["prompt_style"] = style
        job.config_yaml = OmegaConf.to_yaml(OmegaConf.create(job.config))


def model_from_run_config(run_config: dict[str, Any]) -> DiffusionLM:
    """The model a checkpoint's stored run config describes (weights not loaded): for exports."""
    cfg = OmegaConf.create(run_config)
    job = Job(stage="export", seed=int(cfg.get("seed", 0)), task_name=str(cfg.get("task_name", "export")),
              output_dir=Path("."), config=run_config, config_yaml=OmegaConf.to_yaml(cfg), decoder=DecodeConfig(),
              temporal=TemporalSettings(), eval_temporal=None, trainer=TrainerSettings())
    return build_model(job)


# -- decoder presets and sweeps -----------------------------------------------------------------------------
def build_eval_decoders(node: Any) -> dict[str, DecodeConfig]:
    """``eval_decoders``: name -> ``{preset: <decoder preset>, <key>: <override>...}``, each a further decoder of
    the final evaluation, logged as ``eval_<name>/<task>/...`` (e.g. CJ-GRPO's few-step claim: the trained model
    decoded with ``eoser_ass`` as well as with the run's decoder)."""
    decoders = {}
    for name, spec in _plain(node).items():
        _check(re.fullmatch(r"[A-Za-z0-9_]+", str(name)) is not None,
               f"eval_decoders.{name}: name it with letters, digits and _ (it becomes the metric prefix eval_{name})")
        spec = dict(spec or {})
        _check("preset" in spec, f"eval_decoders.{name}: give the decoder preset, e.g. {{preset: eoser_ass}}")
        values = {**load_decoder_preset(str(spec.pop("preset"))), **spec}
        decoders[str(name)] = DecodeConfig.from_dict(values, prefix=f"eval_decoders.{name}")
    return decoders


def load_decoder_preset(name: str) -> dict[str, Any]:
    """The mapping in ``configs/decoder/<name>.yaml`` (what ``decoder=<name>`` selects)."""
    path = config_dir() / "decoder" / f"{name}.yaml"
    if not path.exists():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown decoder preset {name!r}; available: {choices}")
    preset = OmegaConf.load(path)
    merged = OmegaConf.create()
    for parent in preset.pop("defaults", []):  # presets extend `base` through Hydra's defaults list
        if parent != "_self_":
            merged = OmegaConf.merge(merged, load_decoder_preset(parent))
    return dict(OmegaConf.to_container(OmegaConf.merge(merged, preset), resolve=True))  # type: ignore[arg-type]


def decoder_preset_keys(name: str) -> set[str]:
    """The settings preset ``name`` sets itself: the keys of its file and of the presets it extends, except
    ``base``'s (every setting's default, which no preset owns)."""
    path = config_dir() / "decoder" / f"{name}.yaml"
    if not path.exists():
        load_decoder_preset(name)  # raises the error that lists the presets
    preset = OmegaConf.load(path)
    keys: set[str] = set()
    for parent in preset.pop("defaults", []):
        if parent not in ("_self_", "base"):
            keys |= decoder_preset_keys(str(parent))
    return keys | {str(k) for k in preset}


def prefer_chosen_preset(cfg: DictConfig, choices: dict[str, str], overrides: list[str]) -> None:
    """``experiment=<X> decoder=<preset>``: the preset chosen on the command line wins for what it sets itself.

    An experiment is composed after the decoder group, so its ``decoder:`` block (quickstart pins ``gen_length``,
    ``block_length`` and ``steps``) would otherwise overwrite the preset: ``steps=64`` over MED's adaptive
    ``steps: null`` fails, and ``block_length=16`` silently turns full diffusion (``entropy``) into semi-AR.
    So the keys the preset's own file sets (:func:`decoder_preset_keys`; not ``base``'s defaults) take the
    preset's values, moved to the run's generation length with :func:`scale_decoder` as a sweep moves presets
    (tokens per step kept; only a preset that fixes a step count is changed by it); the experiment keeps every
    other key (its length, block length, steps, unless the preset sets them); ``decoder.<key>=`` on the command
    line wins over both. Without ``decoder=`` on the command line, or without an experiment, ``cfg`` is left as
    composed. Updates ``cfg.decoder`` in place, so the logged ``config.yaml`` holds what ran.
    """
    if not choices.get("experiment") or not choices.get("decoder"):
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = {o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides))}
    if "decoder" not in given:
        return
    preset = choices["decoder"]
    if cfg.get("sweep"):
        log.warning("decoder=%s: experiment %s sweeps its own decoders (sweep.decoders=%s) and does not read "
                    "`decoder`; to decode %s alone, set sweep.decoders=[%s] sweep.baseline=null", preset,
                    choices["experiment"], list(cfg.sweep.get("decoders") or []), preset, preset)
    owned = decoder_preset_keys(preset) - {k.removeprefix("decoder.") for k in given if k.startswith("decoder.")}
    values = load_decoder_preset(preset)
    length = values["gen_length"] if "gen_length" in owned else cfg.decoder.gen_length
    moved = scale_decoder(values, int(length))
    with open_dict(cfg.decoder):
        for key in sorted(owned):
            cfg.decoder[key] = moved[key]


def scale_decoder(values: dict[str, Any], gen_length: int) -> dict[str, Any]:
    """A preset moved to another generation length, keeping tokens per step and block length.

    Ascending (ASS) presets keep their number of blocks instead: their blocks are peeled from the step
    sizes, and ``log2 L`` steps allow at most ``log2 L`` blocks.
    """
    values = dict(values)
    if values.get("steps"):
        values["steps"] = max(1, values["steps"] * gen_length // values["gen_length"])
    if values.get("schedule") == "ascending" and values.get("block_length"):
        values["block_length"] = max(1, values["block_length"] * gen_length // values["gen_length"])
    values["gen_length"] = gen_length
    return values


def build_sweep(sweep: DictConfig) -> SweepSettings:
    """Every (preset, generation length) of ``sweep``, each validated before the first one is decoded.

    ``sweep.variants`` names settings that are a preset plus changes (``{ee_0.05: {preset: infill_early_exit,
    early_exit_threshold: 0.05}}``), applied after the preset is moved to the sweep's length; a variant may fix
    its own ``gen_length``. ``sweep.decoders_at`` restricts a length to some of the decoders (``{128: [semi_ar]}``).
    ``sweep.baseline``: the decoder every other setting is compared with on the same problems.
    """
    overrides = _plain(sweep.get("overrides") or {})
    variants = _plain(sweep.get("variants") or {})
    decoders_at = {int(k): list(v) for k, v in (_plain(sweep.get("decoders_at") or {})).items()}
    for length, names in decoders_at.items():
        unknown = sorted(set(names) - set(sweep.decoders))
        _check(not unknown, f"sweep.decoders_at.{length}: {unknown} not in sweep.decoders")
    settings, seen = [], set()
    for name in sweep.decoders:
        variant = dict(variants.get(name, {}))
        preset = str(variant.pop("preset", name))
        for gen_length in sweep.gen_lengths:
            if int(gen_length) in decoders_at and name not in decoders_at[int(gen_length)]:
                continue
            values = {**scale_decoder(load_decoder_preset(preset), gen_length), **overrides.get(name, {}), **variant}
            key = (name, int(values["gen_length"]))
            _check(key not in seen, f"sweep.variants.{name} fixes gen_length={key[1]}: use one sweep.gen_lengths entry")
            seen.add(key)
            try:
                settings.append(SweepSetting(name, key[1], values, DecodeConfig.from_dict(values)))
            except ConfigError as err:
                raise ConfigError(f"sweep setting decoder={name}, gen_length={gen_length}: {err}") from None
    baseline = sweep.get("baseline")
    _check(baseline is None or baseline in sweep.decoders,
           f"sweep.baseline={baseline!r} is not in sweep.decoders={list(sweep.decoders)}")
    output_dir = sweep.get("output_dir")
    return SweepSettings(tuple(settings), Path(output_dir) if output_dir else None,
                         bool(sweep.get("temporal_report", False)), baseline)


# -- validation helpers -----------------------------------------------------------------------------------
def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _without_gold_answers(names: Any) -> list[str]:
    """The tasks among ``names`` with no single gold answer to condition on (Countdown)."""
    return [n for n in names if not TASKS[task_name_of(n)].has_gold_answer]


def _plain(node: Any) -> Any:
    """A config node as plain containers (resolved); plain values pass through."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _settings(cls: type, values: dict[str, Any], prefix: str) -> Any:
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    _check(not unknown, f"{prefix}.{unknown[0] if unknown else ''}: unknown key; available: {sorted(known)}")
    if isinstance(values.get("vote_weightings"), list):
        values["vote_weightings"] = tuple(values["vote_weightings"])
    return cls(**values)


def _instantiate(node: Any, where: str, expected: type | None = None) -> Any:
    if not (OmegaConf.is_config(node) and node.get("_target_")):
        raise ConfigError(f"{where}: give a mapping with _target_: <module.Class> (and its arguments)")
    try:
        obj = instantiate(node)
    except Exception as err:  # Hydra wraps import and argument errors in InstantiationException
        raise ConfigError(f"{where}: cannot instantiate {node._target_!r}: {err}") from None
    if expected is not None and not isinstance(obj, expected):
        raise ConfigError(f"{where}: {node._target_} is not a {expected.__name__}")
    return obj


def _check_train_sources(data: DictConfig, kind: str | None) -> dict[str, list[dict[str, Any]]]:
    """Every training task has examples: a generator or a source that exists; SFT sources have reasoning.
    Returns the validated rows of the local sources, which the DataModule then uses instead of reading again."""
    from dllm_lab.data.sources import SYNTHETIC, sft_rows
    from dllm_lab.tasks import get_task
    from dllm_lab.tasks.sources import is_local_source, load_examples

    sources = _plain(data.get("train_sources") or {})
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in sources:
        _check(name in data.tasks, f"data.train_sources.{name}: {name!r} is not in data.tasks={list(data.tasks)}")
    for name in data.tasks:
        source = sources.get(name)
        if source in (None, SYNTHETIC):
            _check(TASKS[name].has_synthetic,
                   f"data.tasks: {name!r} has no synthetic generator; give it a real source, e.g. "
                   f"'data.train_sources={{{name}: path/to/train.jsonl}}' (or a hub id)")
            continue
        if not is_local_source(str(source)):
            continue  # a hub id: checked when its stream opens (no network here to ask)
        task = get_task(name, **dict((data.get("task_options") or {}).get(name, {})))
        try:
            rows[name] = load_examples(task, split=data.get("train_split", "train"), source=str(source))
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"data.train_sources.{name}={source}: {err}") from None
        if kind == "sft":
            sft_rows(task, rows[name], str(source))  # raises when no row has a reasoning
    return rows


def _validate_data(data: DictConfig) -> None:
    """Values Hydra's struct mode cannot check (ranges, consistency), before anything is built."""
    for name in data.tasks:
        _check(name in TASKS, f"data.tasks: unknown task {name!r}; available: {sorted(TASKS)}")
    for name in data.eval_tasks or {}:
        _check(task_name_of(name) in TASKS, f"data.eval_tasks: unknown task {name!r}; available: {sorted(TASKS)} "
                                            "(a second set of a task: <task>.<label>, e.g. countdown.d1)")
    _check(len(data.weights) == len(data.tasks), "data.weights must have one weight per entry of data.tasks")
    for name, options in (data.get("task_options") or {}).items():
        _check(name in TASKS, f"data.task_options.{name}: unknown task; available: {sorted(TASKS)}")
        try:
            TASKS[name](**dict(options))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"data.task_options.{name}={dict(options)}: {err}") from None
    try:  # the collator's own checks; its messages start with the field name
        SFTCollator(0, 0, block_noise_prob=data.get("block_noise_prob", 0.0),
                    block_noise_length=data.get("block_noise_length", 16))
    except ValueError as err:
        raise ConfigError(f"data.{err}") from None
    _check(data.batch_size > 0, f"data.batch_size={data.batch_size} must be positive")
    _check(data.eval_batch_size > 0, f"data.eval_batch_size={data.eval_batch_size} must be positive")
    _check(data.num_eval > 0, f"data.num_eval={data.num_eval} must be positive")
    style = data.get("prompt_style")
    _check(style is None or style in PROMPT_STYLES,
           f"data.prompt_style={style!r}: use d1, compact, or null for the model's own")


def wants_verbose(cfg: DictConfig) -> bool:
    """``verbose``: whether the console also shows Lightning's, MLflow's and transformers' INFO lines."""
    return bool(cfg.get("verbose", False))
