#!/usr/bin/env python3
"""Runs a checker script's commands in one long-lived process.

    python tests/py/serve.py SCRIPT.py

The Rust tests start one of these per script and test thread instead of one
Python per call: importing numpy, onnx and onnxruntime costs 1-2 s of CPU each
time, and the suite makes a few hundred calls. Reads one JSON array of strings
per line on stdin (the command line SCRIPT takes) and writes one JSON object
per line on stdout: {"ok": RESULT} or {"error": MESSAGE}. Anything the command
prints goes to stderr, so stdout carries only the replies.
"""
import contextlib
import importlib.util
import json
import os
import sys
import traceback


def main():
    path = sys.argv[1]
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    replies = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            with contextlib.redirect_stdout(sys.stderr):
                reply = {"ok": script.command(json.loads(line))}
        except SystemExit as e:
            reply = {"error": str(e.code)}
        except BaseException:
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
