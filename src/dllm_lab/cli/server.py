"""``dllm-server``: a team MLflow server (auth on, artifacts proxied), and its users.

    export DLLM_SERVER_ADMIN_PASSWORD=...            # or --admin-password-file FILE
    dllm-server --host 127.0.0.1 --port 5000         # SQLite in ./mlflow-server; --backend-store-uri postgresql://...
    MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... \\
      DLLM_SERVER_USER_PASSWORD=... dllm-server add-user alice --tracking-uri http://127.0.0.1:5000
    dllm-server grant alice dllm-lab/quickstart EDIT --tracking-uri http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dllm_lab.tracking.server import (
    ADMIN_PASSWORD_ENV,
    PERMISSIONS,
    STORE_URI_ENV,
    USER_PASSWORD_ENV,
    ServerSettings,
    ServerSetupError,
    add_user,
    grant,
    read_secret,
    serve,
)

COMMANDS = ("serve", "add-user", "grant")


def _parser() -> argparse.ArgumentParser:
    # no abbreviations: `--admin-password x` must not pass as `--admin-password-file x`
    parser = argparse.ArgumentParser(prog="dllm-server", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("serve", help="start the server (the default command)", allow_abbrev=False)
    run.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    run.add_argument("--port", type=int, default=5000)
    run.add_argument("--base-dir", type=Path, default=Path("mlflow-server"),
                     help="SQLite stores, artifacts, auth config and CSRF key (default ./mlflow-server)")
    run.add_argument("--backend-store-uri", default=os.environ.get(STORE_URI_ENV),
                     help=f"runs database (default ${STORE_URI_ENV}, else sqlite:///<base-dir>/mlflow.db); or "
                          "postgresql://user@host/db, its password in ~/.pgpass or $PGPASSWORD, not in the URL")
    run.add_argument("--artifacts-destination", default=None, help="where proxied artifacts are stored "
                     "(default <base-dir>/artifacts; s3://... works too)")
    run.add_argument("--admin-username", default="admin")
    run.add_argument("--admin-password-file", type=Path, default=None,
                     help=f"file whose first line is the admin password (default: ${ADMIN_PASSWORD_ENV})")
    run.add_argument("--default-permission", default="READ", choices=PERMISSIONS,
                     help="what users may do on experiments they were not granted (default READ)")
    run.add_argument("--workers", type=int, default=1)
    run.add_argument("--no-auth", action="store_true", help="no authentication (a private machine only)")
    for name, help_text in (("add-user", "create a user on a running server (as the admin)"),
                            ("grant", "give a user a permission on an experiment (as the admin)")):
        cmd = sub.add_parser(name, help=help_text, allow_abbrev=False)
        cmd.add_argument("username")
        if name == "grant":
            cmd.add_argument("experiment", help="experiment name, e.g. dllm-lab/quickstart (created when missing)")
            cmd.add_argument("permission", choices=PERMISSIONS, type=str.upper)
        else:
            cmd.add_argument("--password-file", type=Path, default=None,
                             help=f"file whose first line is the new user's password (default: ${USER_PASSWORD_ENV})")
        cmd.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            serve(ServerSettings(
                base_dir=args.base_dir, host=args.host, port=args.port, backend_store_uri=args.backend_store_uri,
                artifacts_destination=args.artifacts_destination, auth=not args.no_auth,
                admin_username=args.admin_username, admin_password_file=args.admin_password_file,
                default_permission=args.default_permission, workers=args.workers))
        elif args.command == "add-user":
            add_user(args.tracking_uri, args.username,
                     read_secret(USER_PASSWORD_ENV, args.password_file, f"the password of {args.username!r}"))
            print(f"dllm-server: user {args.username!r} created on {args.tracking_uri}")
        else:
            experiment_id = grant(args.tracking_uri, args.username, args.experiment, args.permission)
            print(f"dllm-server: {args.username!r} has {args.permission} on {args.experiment!r} "
                  f"(experiment {experiment_id})")
    except ServerSetupError as err:
        sys.exit(f"dllm-server: {err}")
    except Exception as err:  # MLflow's REST errors: one line, not a traceback
        if type(err).__name__ not in ("MlflowException", "RestException", "HTTPError"):
            raise
        sys.exit(f"dllm-server {args.command}: {err}")


if __name__ == "__main__":
    main()
