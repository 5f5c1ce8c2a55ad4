"""``python -m dllm_lab.cli.export <run>/checkpoints/last.ckpt <out_dir>``: Lightning ckpt -> HF directory."""

from __future__ import annotations

import argparse

from dllm_lab.paths import ensure_root_env


def main() -> None:
    ensure_root_env()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ckpt_path")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    from dllm_lab.runs.export import export_checkpoint

    try:
        print(export_checkpoint(args.ckpt_path, args.out_dir))
    except (ValueError, FileNotFoundError) as err:  # unsafe, unreadable or missing checkpoint: say why, no traceback
        raise SystemExit(f"export: {err}") from None


if __name__ == "__main__":
    main()
