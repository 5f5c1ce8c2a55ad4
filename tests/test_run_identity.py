"""Runs told apart on a shared dashboard: a name from what the command line changed, preset/override/git tags,
the params the stage reads, the experiment's description; and a decoder preset chosen on the command line
winning over an experiment's decoder block for the settings it owns."""

from __future__ import annotations

import pytest

from dllm_lab.decoding import DecodeConfig
from dllm_lab.factory import build_job, decoder_preset_keys, load_decoder_preset
from dllm_lab.paths import config_dir
from dllm_lab.tracking.identity import MAX_NAME, experiment_description, run_name, run_params

ADAPTIVE = sorted(p.stem for p in (config_dir() / "decoder").glob("*.yaml")
                  if load_decoder_preset(p.stem).get("steps") is None)
EVAL_EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml")
                          if "\nentry: eval" in p.read_text())
QUIET = ["logger=none"]


def test_the_name_is_the_experiment_plus_what_changed_and_skips_where_it_logs():
    assert run_name("quickstart", ["decoder=med", "data.num_eval=16", "logger.tracking_uri=http://x:5000",
                                   "paths.output_dir=/tmp/o", "hydra.run.dir=/tmp/h", "+tags.study=x",
                                   "logger=none", "sweep.output_dir=/tmp/s", "trainer.num_threads=1"]) \
        == "quickstart decoder=med data.num_eval=16"
    assert run_name("quickstart", []) == "quickstart"


def test_a_long_override_list_is_cut_with_a_count_and_stays_readable():
    overrides = [f"data.option_{i}={'x' * 10}" for i in range(20)]
    name = run_name("train", overrides)
    assert len(name) <= MAX_NAME and name.startswith("train data.option_0=")
    shown = name.count("data.option_")
    assert name.endswith(f"(+{20 - shown} more)")


def test_an_eval_run_logs_no_training_settings_and_a_train_run_logs_everything():
    config = {"algo": {"lr": 1e-4}, "trainer": {"max_steps": 10, "gradient_clip_val": 1.0, "precision": "32"},
              "data": {"batch_size": 8, "num_eval": 16}, "decoder": {"steps": 64}, "ckpt_path": None, "seed": 0}
    assert run_params(config, "eval") == {"trainer": {"precision": "32"}, "data": {"num_eval": 16},
                                          "decoder": {"steps": 64}, "seed": 0}
    assert run_params(config, "train") == config


def test_the_experiment_description_is_its_config_header():
    text = experiment_description({"experiment": "quickstart"}, "eval", config_dir())
    assert text.startswith("The README's first command: evaluate the embedded tiny model")
    assert "@package" not in text and text.endswith("Config: `configs/experiment/quickstart.yaml`")
    assert experiment_description({}, "eval", config_dir()).startswith("Entry config of")


def test_job_identity_carries_presets_overrides_study_seed_and_git(compose_cfg):
    job = build_job(compose_cfg("eval", ["experiment=quickstart", "decoder=med", "data.num_eval=16", *QUIET]),
                    "eval")
    identity = job.identity
    assert identity.name == "quickstart decoder=med data.num_eval=16"
    tags = identity.tags
    assert tags["preset.decoder"] == "med" and tags["preset.model"] == "tiny" and tags["preset.trainer"] == "cpu"
    assert tags["study"] == "quickstart" and tags["seed"] == "0"
    assert tags["overrides"] == "experiment=quickstart decoder=med data.num_eval=16 logger=none"
    assert len(tags["git_commit"]) == 40 and tags["git_dirty"] in ("true", "false")
    assert job.description.startswith("The README's first command")


def test_the_preset_owns_the_keys_of_its_file_and_of_the_presets_it_extends():
    assert decoder_preset_keys("med") == {"steps", "scorer", "adaptive"}
    assert {"eoser", "steps"} <= decoder_preset_keys("eoser_ass")
    assert decoder_preset_keys("semi_ar") == set()


@pytest.mark.parametrize("experiment", EVAL_EXPERIMENTS)
@pytest.mark.parametrize("preset", ADAPTIVE)
def test_an_adaptive_preset_wins_over_every_eval_experiment(compose_cfg, experiment, preset):
    cfg = compose_cfg("eval", [f"experiment={experiment}", f"decoder={preset}", *QUIET])
    job = build_job(cfg, "eval")
    values = load_decoder_preset(preset)
    for key in decoder_preset_keys(preset) - {"steps", "block_length", "gen_length"}:
        assert getattr(job.decoder, key) == values[key], (experiment, preset, key)
    assert job.decoder.steps is None  # adaptive: the experiment's pinned step count does not survive
    assert job.decoder.adaptive == values["adaptive"]
    DecodeConfig.from_dict(dict(job.config["decoder"]))  # what the run logs is what it runs


def test_the_command_line_wins_over_the_preset_and_the_experiment_keeps_what_the_preset_does_not_own(compose_cfg):
    job = build_job(compose_cfg("eval", ["experiment=rl_base", "decoder=threshold", "decoder.threshold=0.7",
                                         *QUIET]), "eval")
    assert job.decoder.adaptive == "threshold" and job.decoder.threshold == 0.7
    assert job.decoder.gen_length == 64 and job.decoder.block_length == 16  # rl_base's own length


def test_without_decoder_on_the_command_line_the_experiment_is_composed_as_written(compose_cfg):
    job = build_job(compose_cfg("eval", ["experiment=rl_base", *QUIET]), "eval")
    assert job.decoder.steps == 32 and job.decoder.adaptive is None


@pytest.mark.slow
def test_quickstart_with_med_runs_end_to_end(compose_cfg):
    """The README's quickstart with MED on the embedded model: MED unmasks several confident tokens per step."""
    from dllm_lab.runs import run_eval

    metrics = run_eval(compose_cfg("eval", ["experiment=quickstart", "decoder=med", "data.num_eval=4",
                                            "data.eval_batch_size=4", *QUIET]))
    nfe = {k: v for k, v in metrics.items() if k.endswith("/nfe")}
    assert len(nfe) == 3 and all(0 < v < 64 for v in nfe.values()), metrics  # not 64 pinned steps
