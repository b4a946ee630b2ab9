"""Host the registry's current model with Ray Serve (HTTP on --host:--port).

    python jobs/serve.py [--model ROOT/NAME | CHECKPOINT] [--host 127.0.0.1] [--port 8000]
        [--gpu] [--root URI ...] [--address ADDR] [--config FILE] [--set KEY=VALUE ...]

--model is a registry entry (the folder holding current.json; default
livseg-work/models/livseg): replicas follow its current version. A token is read from
$LIVSEG_SERVE_TOKEN or --set token_file=PATH; without one only loopback addresses are allowed.
--root allows /v1/segment-uri to read and write under a folder or s3:// prefix (repeatable).

On a local Ray instance (no --address, no RAY_ADDRESS) the job keeps serving until Ctrl-C;
on a running cluster it deploys the app and returns (Serve keeps it running). The same app
runs with `serve run livseg.serve.app:app_builder model=… port=…` or a Serve config file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from livseg import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="registry entry ROOT/NAME or checkpoint folder")
    p.add_argument("--host", help="HTTP address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default 8000)")
    p.add_argument("--gpu", action="store_true", help="one GPU per model replica")
    p.add_argument("--root", action="append", help="URI prefix /v1/segment-uri may use")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local)")
    cli.set_flag(p, "ServeSettings")
    return p


def main(args: argparse.Namespace) -> int:
    from livseg.config import load
    from livseg.serve import ServeSettings, start_app

    named = {"model": args.model, "host": args.host, "port": args.port,
             "roots": ",".join(args.root) if args.root else None,
             **({"device": "cuda", "gpus_per_replica": 1} if args.gpu else {})}  # fmt: skip
    settings = load(ServeSettings, args.config, cli.overrides(args, named))
    local = not (args.address or os.environ.get("RAY_ADDRESS"))
    url = start_app(settings, args.address)
    print(f"serving {settings.model} at {url} (GET {url}/v1/model, POST {url}/v1/segment)")
    if local:
        print("local Ray instance: serving until Ctrl-C", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopped")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run(main, parser()))
